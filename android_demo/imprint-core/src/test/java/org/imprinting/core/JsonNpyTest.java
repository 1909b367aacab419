package org.imprinting.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/** The small file-format pieces on their own (no golden vectors needed). */
public class JsonNpyTest {
    @Test
    public void jsonRoundTripsUnicodeAndEscapes() {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("labels", Arrays.<Object>asList("Rot ß 赤", "a\"b\\c", "\u0001"));
        m.put("scale", 10.0);
        m.put("n", 3);
        Map<String, Object> back = Json.parseObject(Json.write(m));
        assertEquals(m.get("labels"), back.get("labels"));
        assertEquals(10.0, ((Number) back.get("scale")).doubleValue(), 0);
        List<?> l = (List<?>) Json.parse("[1e-3, -2, true, null, \"\\u00e9\", Infinity]");
        assertEquals("\u00e9", l.get(4));
        assertEquals(Double.POSITIVE_INFINITY, l.get(5));
    }

    @Test
    public void npyRoundTrips() {
        float[] f = {1.5f, -2f, 3.25f, 0f, 1e-7f, 7f};
        Npy.Array a = Npy.read(Npy.writeFloats(f, 2, 3), "f");
        assertArrayEquals(new int[] {2, 3}, a.shape);
        assertArrayEquals(f, a.floats, 0f);
        Npy.Array b = Npy.read(Npy.writeLongs(new long[] {5, 1L << 40}, 2), "l");
        assertArrayEquals(new int[] {2}, b.shape);
        assertArrayEquals(new long[] {5, 1L << 40}, b.longs);
        // np.save pads the header so that the data starts at a multiple of 64 bytes.
        assertEquals(0, (Npy.writeBytes(new byte[] {1, 2, 3}).length - 3) % 64);
    }
}
