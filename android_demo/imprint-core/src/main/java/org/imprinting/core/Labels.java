package org.imprinting.core;

/** Class label rules, the Python runtime's validate_label: stripped, 1..100 characters, no control characters. */
public final class Labels {
    public static final int MAX_LENGTH = 100;

    private Labels() {
    }

    /** Returns the stripped label or throws IllegalArgumentException saying what is wrong. */
    public static String validate(String label) {
        if (label == null) {
            throw new IllegalArgumentException("a label must be a string, got null");
        }
        String s = strip(label);
        if (s.isEmpty()) {
            throw new IllegalArgumentException("a label must not be empty");
        }
        // Python counts code points, so an emoji is one character there and here.
        int n = s.codePointCount(0, s.length());
        if (n > MAX_LENGTH) {
            throw new IllegalArgumentException("a label must be at most " + MAX_LENGTH + " characters, got " + n);
        }
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c < 32 || c == 127) {
                throw new IllegalArgumentException("a label must not contain control characters: \"" + s + "\"");
            }
        }
        return s;
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
}
