package org.imprinting.core;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.Charset;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.zip.CRC32;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

/**
 * .npz archives (zip files of .npy entries). Reading parses the zip's central directory itself because
 * np.savez writes Zip64 records (force_zip64), which Android's java.util.zip handles only from API 24.
 * Writing uses stored (uncompressed) entries, as np.savez does.
 */
public final class Npz {
    private static final Charset UTF8 = Charset.forName("UTF-8");

    private Npz() {
    }

    /** Entry name without ".npy" to its raw .npy bytes, in archive order. */
    public static Map<String, byte[]> read(byte[] zip, String name) {
        try {
            return readEntries(zip);
        } catch (IndexOutOfBoundsException e) {
            throw new IllegalArgumentException(name + " is truncated or corrupt (bad zip structure)");
        } catch (java.nio.BufferUnderflowException e) {
            throw new IllegalArgumentException(name + " is truncated or corrupt (bad zip structure)");
        } catch (DataFormatException e) {
            throw new IllegalArgumentException(name + " is truncated or corrupt (" + e.getMessage() + ")");
        } catch (ZipFormatError e) {
            throw new IllegalArgumentException(name + " is truncated or corrupt (" + e.getMessage() + ")");
        }
    }

    private static final class ZipFormatError extends Exception {
        private static final long serialVersionUID = 1L;

        ZipFormatError(String m) {
            super(m);
        }
    }

    private static Map<String, byte[]> readEntries(byte[] zip) throws DataFormatException, ZipFormatError {
        ByteBuffer bb = ByteBuffer.wrap(zip).order(ByteOrder.LITTLE_ENDIAN);
        int eocd = -1;
        for (int p = zip.length - 22; p >= Math.max(0, zip.length - 22 - 65535); p--) {
            if (bb.getInt(p) == 0x06054b50) {
                eocd = p;
                break;
            }
        }
        if (eocd < 0) {
            throw new ZipFormatError("not a zip archive: no end of central directory");
        }
        long count = bb.getShort(eocd + 10) & 0xffff;
        long cdOffset = bb.getInt(eocd + 16) & 0xffffffffL;
        if (cdOffset == 0xffffffffL || count == 0xffff) {
            // Zip64: the locator sits right before the classic record and points at the Zip64 record.
            int loc = eocd - 20;
            if (loc < 0 || bb.getInt(loc) != 0x07064b50) {
                throw new ZipFormatError("Zip64 locator missing");
            }
            int z64 = (int) bb.getLong(loc + 8);
            count = bb.getLong(z64 + 32);
            cdOffset = bb.getLong(z64 + 48);
        }
        Map<String, byte[]> out = new LinkedHashMap<String, byte[]>();
        int p = (int) cdOffset;
        for (long e = 0; e < count; e++) {
            if (bb.getInt(p) != 0x02014b50) {
                throw new ZipFormatError("bad central directory entry");
            }
            int method = bb.getShort(p + 10) & 0xffff;
            long csize = bb.getInt(p + 20) & 0xffffffffL;
            long usize = bb.getInt(p + 24) & 0xffffffffL;
            int nlen = bb.getShort(p + 28) & 0xffff;
            int xlen = bb.getShort(p + 30) & 0xffff;
            int clen = bb.getShort(p + 32) & 0xffff;
            long local = bb.getInt(p + 42) & 0xffffffffL;
            String name = new String(zip, p + 46, nlen, UTF8);
            // Zip64 extra field (id 1): the 0xffffffff fields follow in order usize, csize, offset.
            int x = p + 46 + nlen;
            int xend = x + xlen;
            while (x + 4 <= xend) {
                int id = bb.getShort(x) & 0xffff;
                int len = bb.getShort(x + 2) & 0xffff;
                if (id == 1) {
                    int q = x + 4;
                    if (usize == 0xffffffffL) {
                        usize = bb.getLong(q);
                        q += 8;
                    }
                    if (csize == 0xffffffffL) {
                        csize = bb.getLong(q);
                        q += 8;
                    }
                    if (local == 0xffffffffL) {
                        local = bb.getLong(q);
                    }
                }
                x += 4 + len;
            }
            int lp = (int) local;
            if (bb.getInt(lp) != 0x04034b50) {
                throw new ZipFormatError("bad local header for " + name);
            }
            int dataStart = lp + 30 + (bb.getShort(lp + 26) & 0xffff) + (bb.getShort(lp + 28) & 0xffff);
            byte[] data;
            if (method == 0) {
                data = new byte[(int) usize];
                System.arraycopy(zip, dataStart, data, 0, (int) usize);
            } else if (method == 8) {
                Inflater inf = new Inflater(true);
                inf.setInput(zip, dataStart, (int) csize);
                data = new byte[(int) usize];
                int n = inf.inflate(data);
                inf.end();
                if (n != usize) {
                    throw new ZipFormatError("entry " + name + " inflates to " + n + " bytes, expected " + usize);
                }
            } else {
                throw new ZipFormatError("entry " + name + " uses unsupported compression method " + method);
            }
            CRC32 crc = new CRC32();
            crc.update(data, 0, data.length);
            if (crc.getValue() != (bb.getInt(p + 16) & 0xffffffffL)) {
                throw new ZipFormatError("entry " + name + " fails its CRC check");
            }
            out.put(name.endsWith(".npy") ? name.substring(0, name.length() - 4) : name, data);
            p += 46 + nlen + xlen + clen;
        }
        return out;
    }

    /** A stored (uncompressed) zip of name.npy entries, as np.savez writes. */
    public static byte[] write(Map<String, byte[]> entries) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        ZipOutputStream zos = new ZipOutputStream(bytes);
        for (Map.Entry<String, byte[]> e : entries.entrySet()) {
            byte[] data = e.getValue();
            ZipEntry z = new ZipEntry(e.getKey() + ".npy");
            z.setMethod(ZipEntry.STORED);
            z.setSize(data.length);
            z.setCompressedSize(data.length);
            CRC32 crc = new CRC32();
            crc.update(data, 0, data.length);
            z.setCrc(crc.getValue());
            zos.putNextEntry(z);
            zos.write(data);
            zos.closeEntry();
        }
        zos.close();
        return bytes.toByteArray();
    }
}
