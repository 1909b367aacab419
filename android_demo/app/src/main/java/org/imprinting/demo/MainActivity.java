package org.imprinting.demo;

import android.Manifest;
import android.app.Activity;
import android.content.Intent;
import android.content.pm.PackageManager;
import android.graphics.SurfaceTexture;
import android.media.Image;
import android.os.Bundle;
import android.os.SystemClock;
import android.view.MotionEvent;
import android.view.TextureView;
import android.view.View;
import android.widget.Button;
import android.widget.EditText;
import android.widget.ProgressBar;
import android.widget.TextView;

import org.imprinting.core.ClassStore;
import org.imprinting.core.Classification;
import org.imprinting.core.Labels;
import org.imprinting.core.Preprocessor;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Live preview with the top label (or "unknown" below the bundle's threshold, with the nearest class and its
 * score, which stays visible), its probability and the FPS; "Add class": type a name and hold the button
 * while the camera sees the object, N frames are imprinted into one class. Anonymous classes rather than
 * lambdas throughout: the app targets Java 8 bytecode that dx accepts.
 */
public class MainActivity extends Activity implements CameraController.FrameListener {
    private static final int CAMERA_REQUEST = 1;
    static final int SHOTS_PER_CLASS = 10;

    private TextureView preview;
    private TextView label;
    private TextView score;
    private TextView fps;
    private TextView status;
    private EditText name;
    private ProgressBar progress;
    private CameraController camera;

    // Written once by the loader thread, then read by the camera thread.
    private volatile Model model;
    private float[] input;
    private long lastFrame;
    private double fpsAverage;

    private final Object captureLock = new Object();
    private String captureLabel;
    private final List<float[]> captured = new ArrayList<float[]>();

    /** What the camera thread needs, built off the UI thread (reading the model takes a moment). */
    private static final class Model {
        final ModelBundle bundle;
        final Extractor extractor;
        final Preprocessor preprocessor;
        final ClassStore store;

        Model(ModelBundle bundle, Extractor extractor, Preprocessor preprocessor, ClassStore store) {
            this.bundle = bundle;
            this.extractor = extractor;
            this.preprocessor = preprocessor;
            this.store = store;
        }
    }

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_main);
        preview = (TextureView) findViewById(R.id.preview);
        label = (TextView) findViewById(R.id.label);
        score = (TextView) findViewById(R.id.score);
        fps = (TextView) findViewById(R.id.fps);
        status = (TextView) findViewById(R.id.status);
        name = (EditText) findViewById(R.id.name);
        progress = (ProgressBar) findViewById(R.id.progress);
        progress.setMax(SHOTS_PER_CLASS);
        camera = new CameraController(this, this);
        Button add = (Button) findViewById(R.id.add);
        add.setOnTouchListener(new View.OnTouchListener() {
            @Override
            public boolean onTouch(View v, MotionEvent event) {
                int action = event.getActionMasked();
                if (action == MotionEvent.ACTION_DOWN) {
                    startCapture();
                } else if (action == MotionEvent.ACTION_UP || action == MotionEvent.ACTION_CANCEL) {
                    finishCapture();
                }
                return false;
            }
        });
        findViewById(R.id.classes).setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                startActivity(new Intent(MainActivity.this, ClassesActivity.class));
            }
        });
        loadModel();
    }

    private void loadModel() {
        status.setText("Loading the model…");
        new Thread(new Runnable() {
            @Override
            public void run() {
                try {
                    ModelBundle b = ModelBundle.load(getAssets());
                    Preprocessor p = new Preprocessor(b.manifest.preprocess, b.extractor.layout);
                    ClassStore s = Store.get(MainActivity.this, b.manifest);
                    model = new Model(b, new Extractor(b), p, s);
                    show(b.manifest.name + " (" + b.extractor.file + "), " + s.size() + " classes"
                            + (b.manifest.shotOffsets != null ? ", shot-calibrated" : "")
                            + (b.manifest.unknownMinEvidenceByShots != null ? ", unknown by shot count"
                                    : String.format(Locale.US, ", unknown below %.2f", b.manifest.unknownMinCosine))
                            + (b.manifest.unknownCalibrated ? "" : " (default: the bundle carries no threshold)"));
                } catch (Exception e) {
                    show("Cannot load the model: " + e.getMessage());
                }
            }
        }, "model-loader").start();
    }

    @Override
    protected void onResume() {
        super.onResume();
        if (checkSelfPermission(Manifest.permission.CAMERA) != PackageManager.PERMISSION_GRANTED) {
            requestPermissions(new String[] {Manifest.permission.CAMERA}, CAMERA_REQUEST);
            return;
        }
        startCameraWhenReady();
    }

    @Override
    public void onRequestPermissionsResult(int requestCode, String[] permissions, int[] results) {
        if (requestCode == CAMERA_REQUEST && results.length > 0 && results[0] == PackageManager.PERMISSION_GRANTED) {
            startCameraWhenReady();
        } else {
            status.setText(R.string.camera_denied);
        }
    }

    private void startCameraWhenReady() {
        if (preview.isAvailable()) {
            camera.start(preview.getSurfaceTexture());
            return;
        }
        preview.setSurfaceTextureListener(new TextureView.SurfaceTextureListener() {
            @Override
            public void onSurfaceTextureAvailable(SurfaceTexture surface, int width, int height) {
                camera.start(surface);
            }

            @Override
            public void onSurfaceTextureSizeChanged(SurfaceTexture surface, int width, int height) {
            }

            @Override
            public boolean onSurfaceTextureDestroyed(SurfaceTexture surface) {
                return true;
            }

            @Override
            public void onSurfaceTextureUpdated(SurfaceTexture surface) {
            }
        });
    }

    @Override
    protected void onPause() {
        camera.stop();
        super.onPause();
    }

    @Override
    protected void onDestroy() {
        Model m = model;
        if (m != null && isFinishing()) {
            m.extractor.close();
        }
        super.onDestroy();
    }

    private void startCapture() {
        try {
            String l = Labels.validate(name.getText().toString());
            synchronized (captureLock) {
                captureLabel = l;
                captured.clear();
            }
            progress.setProgress(0);
        } catch (IllegalArgumentException e) {
            status.setText(e.getMessage());
        }
    }

    /** Imprints what was captured so far (all N frames, or fewer when the button was let go early). */
    private void finishCapture() {
        String l;
        float[][] shots;
        synchronized (captureLock) {
            l = captureLabel;
            shots = captured.toArray(new float[0][]);
            captureLabel = null;
            captured.clear();
        }
        Model m = model;
        if (l == null || shots.length == 0 || m == null) {
            return;
        }
        m.store.learn(l, shots);
        Store.saveAsync();
        show("Learned \"" + l + "\" from " + shots.length + " frames (" + m.store.count(l) + " in all)");
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                progress.setProgress(0);
            }
        });
    }

    // ----- camera thread ---------------------------------------------------------------------------

    @Override
    public void onFrame(Image image, int rotation) {
        Model m = model;
        if (m == null) {
            return;
        }
        Image.Plane[] planes = image.getPlanes();
        if (input == null) {
            input = new float[m.preprocessor.inputLength()];
        }
        final float[] embedding;
        try {
            m.preprocessor.fromYuv420(planes[0].getBuffer(), planes[1].getBuffer(), planes[2].getBuffer(),
                    planes[0].getRowStride(), planes[1].getRowStride(), planes[1].getPixelStride(),
                    image.getWidth(), image.getHeight(), rotation, input);
            embedding = m.extractor.run(input);
        } catch (Exception e) {
            show("Inference failed: " + e.getMessage());
            return;
        }
        boolean done = false;
        final int n;
        synchronized (captureLock) {
            if (captureLabel != null) {
                captured.add(embedding);
                done = captured.size() >= SHOTS_PER_CLASS;
            }
            n = captured.size();
        }
        if (done) {
            finishCapture();
        }
        final Classification c = m.store.size() > 0 ? m.store.classify(embedding, 3) : null;
        long now = SystemClock.elapsedRealtime();
        if (lastFrame > 0) {
            fpsAverage = 0.9 * fpsAverage + 0.1 * (1000.0 / Math.max(1, now - lastFrame));
        }
        lastFrame = now;
        final double f = fpsAverage;
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                showPrediction(c, f, n);
            }
        });
    }

    @Override
    public void onError(String message) {
        show(message);
    }

    // ----- UI thread -------------------------------------------------------------------------------

    private void showPrediction(Classification c, double framesPerSecond, int capturedFrames) {
        if (c == null) {
            label.setText("—");
            score.setText("");
        } else {
            label.setText(c.unknown ? "unknown" : c.labels[0]);
            // With the bundle's shot offsets the score is cosine + offset(shot count), not a plain cosine. An
            // unknown answer still shows how close the nearest class came, and that class.
            Model m = model;
            String kind = m != null && m.store.shotOffsets() != null ? "score" : "cos";
            String text = String.format(Locale.US, "%s %.2f  p %.0f%%", kind, c.cosines[0], 100 * c.probabilities[0]);
            if (c.unknown && m != null) {
                text += String.format(Locale.US, "  (%s, below %.2f)", c.labels[0], c.threshold);
            }
            score.setText(text);
        }
        fps.setText(String.format(Locale.US, "%.1f FPS", framesPerSecond));
        if (capturedFrames > 0) {
            progress.setProgress(capturedFrames);
        }
    }

    private void show(final String text) {
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                status.setText(text);
            }
        });
    }
}
