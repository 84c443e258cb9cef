package dev.edgecnn.demo;

import android.annotation.SuppressLint;
import android.content.Context;
import android.graphics.ImageFormat;
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
import java.nio.ByteBuffer;
import java.util.Collections;

/** Live frames from the back camera (Camera2), delivered as upright ARGB pixels on a background thread. */
final class CameraFrames {
    interface Listener {
        /** Called on the camera thread; frames arriving while one is handled are dropped. */
        void onFrame(int[] argb, int width, int height);

        void onError(String message);
    }

    private static final int WIDTH = 640;
    private static final int HEIGHT = 480;

    private final CameraManager manager;
    private final Listener listener;
    private HandlerThread thread;
    private Handler handler;
    private CameraDevice camera;
    private CameraCaptureSession session;
    private ImageReader reader;
    private int rotation;

    CameraFrames(Context context, Listener listener) {
        this.manager = (CameraManager) context.getSystemService(Context.CAMERA_SERVICE);
        this.listener = listener;
    }

    @SuppressLint("MissingPermission") // the activity asks for CAMERA before calling start()
    void start() throws CameraAccessException {
        String id = backCamera();
        if (id == null) {
            listener.onError("this device has no back camera");
            return;
        }
        Integer orientation = manager.getCameraCharacteristics(id).get(CameraCharacteristics.SENSOR_ORIENTATION);
        rotation = orientation == null ? 0 : orientation;
        thread = new HandlerThread("camera");
        thread.start();
        handler = new Handler(thread.getLooper());
        reader = ImageReader.newInstance(WIDTH, HEIGHT, ImageFormat.YUV_420_888, 2);
        reader.setOnImageAvailableListener(new ImageReader.OnImageAvailableListener() {
            @Override
            public void onImageAvailable(ImageReader r) {
                Image image = r.acquireLatestImage();
                if (image == null) {
                    return;
                }
                try {
                    int w = image.getWidth();
                    int h = image.getHeight();
                    int[] argb = rotate(yuvToArgb(image), w, h, rotation);
                    boolean quarter = rotation == 90 || rotation == 270;
                    listener.onFrame(argb, quarter ? h : w, quarter ? w : h);
                } finally {
                    image.close();
                }
            }
        }, handler);
        manager.openCamera(id, new CameraDevice.StateCallback() {
            @Override
            public void onOpened(CameraDevice device) {
                camera = device;
                startSession();
            }

            @Override
            public void onDisconnected(CameraDevice device) {
                device.close();
                camera = null;
            }

            @Override
            public void onError(CameraDevice device, int error) {
                device.close();
                camera = null;
                listener.onError("camera error " + error);
            }
        }, handler);
    }

    private void startSession() {
        try {
            camera.createCaptureSession(Collections.singletonList(reader.getSurface()),
                    new CameraCaptureSession.StateCallback() {
                        @Override
                        public void onConfigured(CameraCaptureSession s) {
                            session = s;
                            try {
                                CaptureRequest.Builder request = camera.createCaptureRequest(CameraDevice.TEMPLATE_PREVIEW);
                                request.addTarget(reader.getSurface());
                                session.setRepeatingRequest(request.build(), null, handler);
                            } catch (CameraAccessException | IllegalStateException e) {
                                listener.onError("cannot start the camera: " + e.getMessage());
                            }
                        }

                        @Override
                        public void onConfigureFailed(CameraCaptureSession s) {
                            listener.onError("the camera refused the capture configuration");
                        }
                    }, handler);
        } catch (CameraAccessException e) {
            listener.onError("cannot start the camera: " + e.getMessage());
        }
    }

    void stop() {
        if (session != null) {
            session.close();
            session = null;
        }
        if (camera != null) {
            camera.close();
            camera = null;
        }
        if (reader != null) {
            reader.close();
            reader = null;
        }
        if (thread != null) {
            thread.quitSafely();
            thread = null;
        }
    }

    private String backCamera() throws CameraAccessException {
        for (String id : manager.getCameraIdList()) {
            Integer facing = manager.getCameraCharacteristics(id).get(CameraCharacteristics.LENS_FACING);
            if (facing != null && facing == CameraCharacteristics.LENS_FACING_BACK) {
                return id;
            }
        }
        return null;
    }

    /** YUV_420_888 (any row and pixel strides) to ARGB, BT.601 full range as camera JPEGs use. */
    static int[] yuvToArgb(Image image) {
        int w = image.getWidth();
        int h = image.getHeight();
        Image.Plane[] planes = image.getPlanes();
        ByteBuffer y = planes[0].getBuffer();
        ByteBuffer u = planes[1].getBuffer();
        ByteBuffer v = planes[2].getBuffer();
        int yRow = planes[0].getRowStride();
        int yPixel = planes[0].getPixelStride();
        int uvRow = planes[1].getRowStride();
        int uvPixel = planes[1].getPixelStride();
        int[] argb = new int[w * h];
        for (int row = 0; row < h; row++) {
            for (int col = 0; col < w; col++) {
                int luma = y.get(row * yRow + col * yPixel) & 0xff;
                int chroma = (row / 2) * uvRow + (col / 2) * uvPixel;
                int cb = (u.get(chroma) & 0xff) - 128;
                int cr = (v.get(chroma) & 0xff) - 128;
                int r = clamp(Math.round(luma + 1.402f * cr));
                int g = clamp(Math.round(luma - 0.344136f * cb - 0.714136f * cr));
                int b = clamp(Math.round(luma + 1.772f * cb));
                argb[row * w + col] = 0xff000000 | (r << 16) | (g << 8) | b;
            }
        }
        return argb;
    }

    /** Rotate clockwise by the sensor orientation so that the frame is upright for the classifier. */
    static int[] rotate(int[] argb, int w, int h, int degrees) {
        if (degrees == 0) {
            return argb;
        }
        int[] out = new int[argb.length];
        for (int row = 0; row < h; row++) {
            for (int col = 0; col < w; col++) {
                int p = argb[row * w + col];
                if (degrees == 90) {
                    out[col * h + (h - 1 - row)] = p;
                } else if (degrees == 180) {
                    out[(h - 1 - row) * w + (w - 1 - col)] = p;
                } else {
                    out[(w - 1 - col) * h + row] = p;
                }
            }
        }
        return out;
    }

    private static int clamp(int value) {
        return value < 0 ? 0 : (value > 255 ? 255 : value);
    }
}
