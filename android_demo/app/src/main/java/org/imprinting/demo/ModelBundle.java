package org.imprinting.demo;

import android.content.res.AssetManager;

import org.imprinting.core.ClassStoreFile;
import org.imprinting.core.Manifest;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.Charset;

/** The model bundle shipped in assets/bundle/ (copied there from `imprint export`, see README). */
final class ModelBundle {
    static final String DIR = "bundle";

    final Manifest manifest;
    final Manifest.Extractor extractor;
    final byte[] model;

    private ModelBundle(Manifest manifest, Manifest.Extractor extractor, byte[] model) {
        this.manifest = manifest;
        this.extractor = extractor;
        this.model = model;
    }

    static ModelBundle load(AssetManager assets) throws IOException {
        byte[] json;
        try {
            json = read(assets, DIR + "/manifest.json");
        } catch (IOException e) {
            throw new IOException("no model bundle in the app: run `imprint export --out bundle` and copy it to "
                    + "app/src/main/assets/bundle/ (android_demo/README.md)");
        }
        Manifest m = Manifest.parse(new String(json, Charset.forName("UTF-8")));
        Manifest.Extractor e = m.selectOnnx();
        return new ModelBundle(m, e, read(assets, DIR + "/" + e.file));
    }

    private static byte[] read(AssetManager assets, String path) throws IOException {
        InputStream in = assets.open(path);
        try {
            return ClassStoreFile.readAll(in);
        } finally {
            in.close();
        }
    }
}
