package org.imprinting.demo;

import android.content.Context;
import android.graphics.ImageFormat;
import android.graphics.SurfaceTexture;
import android.hardware.camera2.CameraAccessException;
import android.hardware.camera2.CameraCaptureSession;
import android.hardware.camera2.CameraCharacteristics;
import android.hardware.camera2.CameraDevice;
import android.hardware.camera2.CameraManager;
import android.hardware.camera2.CaptureRequest;
import android.media.Image;
import android.media.ImageReader;
import android.os.Handler;
import android.os.HandlerThread;
import android.util.Log;
import android.view.Surface;

import java.util.Arrays;

/**
 * The framework Camera2 API: the back camera streams to the preview TextureView and, at a small size,
 * to an ImageReader (YUV_420_888) whose frames go to a FrameListener on a background thread. The reader
 * keeps two images and drops frames while the listener is busy, so inference never builds a backlog.
 */
final class CameraController {
    private static final String TAG = "imprinting";
    // A small analysis size: the model sees a few hundred pixels, and YUV conversion scales with the frame.
    static final int WIDTH = 640;
    static final int HEIGHT = 480;

    interface FrameListener {
        /** A YUV_420_888 frame and the clockwise rotation that makes it upright; do not close it. */
        void onFrame(Image image, int rotation);

        void onError(String message);
    }

    private final CameraManager manager;
    private final FrameListener listener;
    private HandlerThread thread;
    private Handler handler;
    private CameraDevice device;
    private CameraCaptureSession session;
    private ImageReader reader;
    private int rotation;

    CameraController(Context context, FrameListener listener) {
        this.manager = (CameraManager) context.getSystemService(Context.CAMERA_SERVICE);
        this.listener = listener;
    }

    /** Opens the back camera; the caller holds the CAMERA permission (checked by MainActivity). */
    void start(final SurfaceTexture preview) {
        thread = new HandlerThread("camera");
        thread.start();
        handler = new Handler(thread.getLooper());
        try {
            String id = backCamera();
            Integer sensor = manager.getCameraCharacteristics(id).get(CameraCharacteristics.SENSOR_ORIENTATION);
            // The activity is locked to portrait, so the sensor orientation alone turns frames upright.
            rotation = sensor == null ? 0 : sensor;
            reader = ImageReader.newInstance(WIDTH, HEIGHT, ImageFormat.YUV_420_888, 2);
            reader.setOnImageAvailableListener(new ImageReader.OnImageAvailableListener() {
                @Override
                public void onImageAvailable(ImageReader r) {
                    Image image = r.acquireLatestImage();
                    if (image == null) {
                        return;
                    }
                    try {
                        listener.onFrame(image, rotation);
                    } finally {
                        image.close();
                    }
                }
            }, handler);
            preview.setDefaultBufferSize(WIDTH, HEIGHT);
            manager.openCamera(id, new CameraDevice.StateCallback() {
                @Override
                public void onOpened(CameraDevice camera) {
                    device = camera;
                    startSession(new Surface(preview));
                }

                @Override
                public void onDisconnected(CameraDevice camera) {
                    camera.close();
                    device = null;
                }

                @Override
                public void onError(CameraDevice camera, int error) {
                    camera.close();
                    device = null;
                    listener.onError("the camera failed (error " + error + ")");
                }
            }, handler);
        } catch (CameraAccessException e) {
            listener.onError("cannot open the camera: " + e.getMessage());
        } catch (SecurityException e) {
            listener.onError("the camera permission was not granted");
        }
    }

    private String backCamera() throws CameraAccessException {
        String[] ids = manager.getCameraIdList();
        for (String id : ids) {
            Integer facing = manager.getCameraCharacteristics(id).get(CameraCharacteristics.LENS_FACING);
            if (facing != null && facing == CameraCharacteristics.LENS_FACING_BACK) {
                return id;
            }
        }
        if (ids.length == 0) {
            throw new CameraAccessException(CameraAccessException.CAMERA_ERROR, "this device has no camera");
        }
        return ids[0];
    }

    private void startSession(final Surface previewSurface) {
        try {
            final CaptureRequest.Builder request = device.createCaptureRequest(CameraDevice.TEMPLATE_PREVIEW);
            request.addTarget(previewSurface);
            request.addTarget(reader.getSurface());
            device.createCaptureSession(Arrays.asList(previewSurface, reader.getSurface()),
                    new CameraCaptureSession.StateCallback() {
                        @Override
                        public void onConfigured(CameraCaptureSession s) {
                            session = s;
                            try {
                                request.set(CaptureRequest.CONTROL_AF_MODE, CaptureRequest.CONTROL_AF_MODE_CONTINUOUS_PICTURE);
                                s.setRepeatingRequest(request.build(), null, handler);
                            } catch (CameraAccessException e) {
                                listener.onError("cannot start the preview: " + e.getMessage());
                            }
                        }

                        @Override
                        public void onConfigureFailed(CameraCaptureSession s) {
                            listener.onError("the camera refused the preview configuration");
                        }
                    }, handler);
        } catch (CameraAccessException e) {
            listener.onError("cannot start the preview: " + e.getMessage());
        }
    }

    void stop() {
        if (session != null) {
            session.close();
            session = null;
        }
        if (device != null) {
            device.close();
            device = null;
        }
        if (reader != null) {
            reader.close();
            reader = null;
        }
        if (thread != null) {
            thread.quitSafely();
            try {
                thread.join();
            } catch (InterruptedException e) {
                Log.w(TAG, "interrupted while stopping the camera thread");
                Thread.currentThread().interrupt();
            }
            thread = null;
        }
    }
}
