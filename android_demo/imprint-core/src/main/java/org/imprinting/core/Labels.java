package org.imprinting.core;

import java.text.Normalizer;

/**
 * Class label rules, the Python runtime's validate_label: Unicode NFC, stripped, 1..100 characters (code points),
 * no control, format (invisible), surrogate or private-use characters, so that "cat" and "cat\u200b" cannot be two
 * classes. Unassigned code points (Python's category Cn) are not refused here: which ones are unassigned depends on
 * the Unicode version of the platform, and an older phone must not refuse a newer emoji that Python accepts.
 */
public final class Labels {
    public static final int MAX_LENGTH = 100;

    private Labels() {
    }

    /** Returns the label in NFC, stripped, or throws IllegalArgumentException saying what is wrong. */
    public static String validate(String label) {
        if (label == null) {
            throw new IllegalArgumentException("a label must be a string, got null");
        }
        String s = strip(Normalizer.normalize(label, Normalizer.Form.NFC));
        if (s.isEmpty()) {
            throw new IllegalArgumentException("a label must not be empty");
        }
        // Python counts code points, so an emoji is one character there and here.
        int n = s.codePointCount(0, s.length());
        if (n > MAX_LENGTH) {
            throw new IllegalArgumentException("a label must be at most " + MAX_LENGTH + " characters, got " + n);
        }
        for (int i = 0; i < s.length(); i = s.offsetByCodePoints(i, 1)) {
            int t = Character.getType(s.codePointAt(i));
            if (t == Character.CONTROL || t == Character.FORMAT || t == Character.SURROGATE || t == Character.PRIVATE_USE) {
                throw new IllegalArgumentException("a label must not contain control or invisible characters: \"" + printable(s) + "\"");
            }
        }
        return s;
    }

    /** A label as a store file must hold it: valid and already in the form validate gives (NFC, stripped). */
    public static void checkStored(String label) {
        String v = validate(label);
        if (!v.equals(label)) {
            throw new IllegalArgumentException("the label \"" + printable(label) + "\" is not in NFC form or has spaces at its ends");
        }
    }

    /** Python's str.strip(): whitespace (Unicode) and the ASCII separators 0x1c-0x1f at both ends. */
    static String strip(String s) {
        int a = 0;
        int b = s.length();
        while (a < b && isSpace(s.charAt(a))) {
            a++;
        }
        while (b > a && isSpace(s.charAt(b - 1))) {
            b--;
        }
        return s.substring(a, b);
    }

    private static boolean isSpace(char c) {
        return Character.isWhitespace(c) || Character.isSpaceChar(c) || (c >= 0x1c && c <= 0x1f) || c == 0x85;
    }

    /** The label with control and format characters escaped as \\uXXXX, so that an error stays one readable line. */
    private static String printable(String s) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            int t = Character.getType(c);
            if (t == Character.CONTROL || t == Character.FORMAT || t == Character.SURROGATE || t == Character.PRIVATE_USE) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.toString();
    }
}
