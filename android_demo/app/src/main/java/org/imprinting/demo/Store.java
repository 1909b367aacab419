package org.imprinting.demo;

import android.content.Context;
import android.util.Log;

import org.imprinting.core.ClassStore;
import org.imprinting.core.ClassStoreFile;
import org.imprinting.core.Manifest;

import java.io.File;
import java.io.IOException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The one class store of the app, shared by both screens and persisted in the app's files directory in
 * the Python runtime's format (classes.npz), so a store can be copied to and from a computer. Saves run
 * on one background thread, atomically (ClassStoreFile.write), so a killed app never loses the file.
 * The bundle's shot offsets (manifest "shot_offsets") and its unknown threshold (manifest
 * calibration.unknown_min_cosine, else the fallback 0.4) are applied to classification, as the Python
 * runtime's Recognizer does by default; they are settings of the bundle, not part of the file.
 */
final class Store {
    private static final String TAG = "imprinting";
    private static final String FILE = "classes.npz";
    private static ClassStore store;
    private static File file;
    private static final ExecutorService SAVER = Executors.newSingleThreadExecutor();

    private Store() {
    }

    /**
     * The store for this bundle's extractor, loaded once per process, calibrated by its shot offsets and
     * answering "unknown" below its threshold.
     */
    static synchronized ClassStore get(Context context, Manifest m) {
        if (store == null) {
            store = load(context, m);
        }
        store.setShotOffsets(m.shotOffsets);
        store.setUnknownPolicy(m.unknownPolicy());
        return store;
    }

    private static ClassStore load(Context context, Manifest m) {
        file = new File(context.getFilesDir(), FILE);
        if (file.isFile()) {
            try {
                return ClassStoreFile.read(file, m.fingerprint, m.embeddingDim);
            } catch (IOException e) {
                Log.w(TAG, "cannot read " + file + ", starting empty", e);
            } catch (IllegalArgumentException e) {
                // Another model's store: keep it aside rather than overwrite what a user taught.
                Log.w(TAG, e.getMessage());
                File aside = new File(context.getFilesDir(), FILE + ".other-model");
                if (!file.renameTo(aside)) {
                    Log.w(TAG, "cannot move " + file + " aside");
                }
            }
        }
        return new ClassStore(m.embeddingDim, m.scale, m.fingerprint);
    }

    /** The store once get() has run (the classes screen opens from the main one), or null. */
    static synchronized ClassStore current() {
        return store;
    }

    static void saveAsync() {
        final ClassStore s;
        final File f;
        synchronized (Store.class) {
            s = store;
            f = file;
        }
        if (s == null || f == null) {
            return;
        }
        SAVER.execute(new Runnable() {
            @Override
            public void run() {
                try {
                    ClassStoreFile.write(f, s);
                } catch (IOException e) {
                    Log.e(TAG, "cannot save the classes to " + f, e);
                }
            }
        });
    }
}
