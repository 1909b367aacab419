package org.imprinting.core;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.Charset;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * NumPy's .npy format (versions 1-3) for the dtypes a class store uses: float32, float64 (read as float),
 * int64, int32 (read as long) and uint8. C order only; little-endian only (what np.save writes on every
 * platform the project targets).
 */
public final class Npy {
    private static final Charset LATIN1 = Charset.forName("ISO-8859-1");
    private static final Pattern DESCR = Pattern.compile("'descr'\\s*:\\s*'([^']*)'");
    private static final Pattern FORTRAN = Pattern.compile("'fortran_order'\\s*:\\s*(True|False)");
    private static final Pattern SHAPE = Pattern.compile("'shape'\\s*:\\s*\\(([^)]*)\\)");

    /** One array: exactly one of floats, longs, bytes is set, by dtype. */
    public static final class Array {
        public final String dtype;
        public final int[] shape;
        public float[] floats;
        public long[] longs;
        public byte[] bytes;

        Array(String dtype, int[] shape) {
            this.dtype = dtype;
            this.shape = shape;
        }

        public int size() {
            int n = 1;
            for (int d : shape) {
                n *= d;
            }
            return n;
        }
    }

    private Npy() {
    }

    public static Array read(byte[] data, String name) {
        if (data.length < 10 || (data[0] & 0xff) != 0x93 || !"NUMPY".equals(new String(data, 1, 5, LATIN1))) {
            throw new IllegalArgumentException(name + " is not a .npy array");
        }
        int major = data[6];
        ByteBuffer bb = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        int headerLen;
        int offset;
        if (major == 1) {
            headerLen = bb.getShort(8) & 0xffff;
            offset = 10;
        } else if (major == 2 || major == 3) {
            headerLen = bb.getInt(8);
            offset = 12;
        } else {
            throw new IllegalArgumentException(name + ": unsupported .npy version " + major);
        }
        String header = new String(data, offset, headerLen, LATIN1);
        Matcher d = DESCR.matcher(header);
        Matcher f = FORTRAN.matcher(header);
        Matcher s = SHAPE.matcher(header);
        if (!d.find() || !f.find() || !s.find()) {
            throw new IllegalArgumentException(name + ": unreadable .npy header " + header.trim());
        }
        if ("True".equals(f.group(1))) {
            throw new IllegalArgumentException(name + ": Fortran-order arrays are not supported");
        }
        String[] dims = s.group(1).split(",");
        int rank = 0;
        for (String dim : dims) {
            if (!dim.trim().isEmpty()) {
                rank++;
            }
        }
        int[] shape = new int[rank];
        int r = 0;
        long cells = 1;
        for (String dim : dims) {
            if (!dim.trim().isEmpty()) {
                long v;
                try {
                    v = Long.parseLong(dim.trim());
                } catch (NumberFormatException e) {
                    throw new IllegalArgumentException(name + ": unreadable .npy shape (" + s.group(1) + ")");
                }
                if (v < 0 || v > Integer.MAX_VALUE) {
                    throw new IllegalArgumentException(name + ": impossible .npy shape (" + s.group(1) + ")");
                }
                shape[r++] = (int) v;
                cells = Math.min(cells * Math.max(v, 1), Integer.MAX_VALUE) * (v == 0 ? 0 : 1);
            }
        }
        Array a = new Array(d.group(1), shape);
        bb.position(offset + headerLen);
        String t = a.dtype;
        long needLong = cells * itemSize(t, name);
        if (bb.remaining() < needLong) {
            throw new IllegalArgumentException(name + " is truncated: " + needLong + " bytes of data expected, "
                    + bb.remaining() + " present");
        }
        int n = (int) cells;
        int need = (int) needLong;
        if (bb.remaining() < need) {
            throw new IllegalArgumentException(name + " is truncated: " + need + " bytes of data expected, "
                    + bb.remaining() + " present");
        }
        if ("<f4".equals(t)) {
            a.floats = new float[n];
            bb.asFloatBuffer().get(a.floats);
        } else if ("<f8".equals(t)) {
            a.floats = new float[n];
            for (int i = 0; i < n; i++) {
                a.floats[i] = (float) bb.getDouble();
            }
        } else if ("<i8".equals(t)) {
            a.longs = new long[n];
            bb.asLongBuffer().get(a.longs);
        } else if ("<i4".equals(t)) {
            a.longs = new long[n];
            for (int i = 0; i < n; i++) {
                a.longs[i] = bb.getInt();
            }
        } else {
            a.bytes = new byte[n];
            bb.get(a.bytes);
        }
        return a;
    }

    private static int itemSize(String dtype, String name) {
        if ("<f4".equals(dtype) || "<i4".equals(dtype)) {
            return 4;
        }
        if ("<f8".equals(dtype) || "<i8".equals(dtype)) {
            return 8;
        }
        if ("|u1".equals(dtype) || "|i1".equals(dtype)) {
            return 1;
        }
        throw new IllegalArgumentException(name + ": unsupported dtype " + dtype
                + " (a class store holds float32, int64 and uint8 arrays)");
    }

    public static byte[] writeFloats(float[] v, int... shape) {
        ByteBuffer bb = body("<f4", shape, v.length * 4);
        bb.asFloatBuffer().put(v);
        return bb.array();
    }

    public static byte[] writeLongs(long[] v, int... shape) {
        ByteBuffer bb = body("<i8", shape, v.length * 8);
        bb.asLongBuffer().put(v);
        return bb.array();
    }

    public static byte[] writeBytes(byte[] v) {
        ByteBuffer bb = body("|u1", new int[] {v.length}, v.length);
        bb.put(v);
        return bb.array();
    }

    /** A version 1.0 header padded so that the data starts on a 64-byte boundary, as np.save does. */
    private static ByteBuffer body(String dtype, int[] shape, int dataBytes) {
        StringBuilder sh = new StringBuilder();
        for (int i = 0; i < shape.length; i++) {
            sh.append(shape[i]).append(i == 0 && shape.length == 1 ? "," : (i < shape.length - 1 ? ", " : ""));
        }
        String dict = "{'descr': '" + dtype + "', 'fortran_order': False, 'shape': (" + sh + "), }";
        int total = 10 + dict.length() + 1;
        int pad = (64 - total % 64) % 64;
        StringBuilder h = new StringBuilder(dict);
        for (int i = 0; i < pad; i++) {
            h.append(' ');
        }
        h.append('\n');
        ByteArrayOutputStream head = new ByteArrayOutputStream();
        head.write(0x93);
        byte[] magic = "NUMPY".getBytes(LATIN1);
        head.write(magic, 0, magic.length);
        head.write(1);
        head.write(0);
        int len = h.length();
        head.write(len & 0xff);
        head.write(len >> 8);
        byte[] hb = h.toString().getBytes(LATIN1);
        head.write(hb, 0, hb.length);
        byte[] prefix = head.toByteArray();
        ByteBuffer bb = ByteBuffer.allocate(prefix.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        bb.put(prefix);
        // Views made from here on (asFloatBuffer, asLongBuffer) start at the data and keep little-endian order.
        return bb;
    }
}
