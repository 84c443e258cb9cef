package dev.edgecnn.demo;

import android.Manifest;
import android.app.Activity;
import android.content.Intent;
import android.content.pm.PackageManager;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.net.Uri;
import android.os.Bundle;
import android.view.View;
import android.widget.AdapterView;
import android.widget.ArrayAdapter;
import android.widget.Button;
import android.widget.ImageView;
import android.widget.LinearLayout;
import android.widget.ScrollView;
import android.widget.Spinner;
import android.widget.TextView;
import dev.edgecnn.core.Catalog;
import dev.edgecnn.core.LatencyStats;
import dev.edgecnn.core.SelfTest;
import dev.edgecnn.core.TopK;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Pick a variant (model, width, resolution, precision), threads and delegate; classify a gallery image
 * or live camera frames; see top-5, latency (p50/p90 over the last runs) and load time; run the
 * benchmark over every bundled model file. At start and on every change of model, a self-test runs the
 * golden image and says whether the top-5 matches what Python computed for the same file.
 * The UI is built in code: no generated resources, so `make android-check` compiles it with javac.
 */
public final class MainActivity extends Activity {
    private static final int PICK_IMAGE = 1;
    private static final int CAMERA_PERMISSION = 2;
    private static final int LATENCY_WINDOW = 50;
    private static final int BENCHMARK_RUNS = 50;
    private static final int BENCHMARK_WARMUP = 5;
    private static final int[] THREADS = {1, 2, 4, 8};

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private final LatencyStats latency = new LatencyStats(LATENCY_WINDOW);
    private final AtomicBoolean frameBusy = new AtomicBoolean(false);
    private AssetStore store;
    private Catalog catalog;
    private Classifier classifier;  // touched only on the worker thread
    private CameraFrames camera;

    private Spinner variantPicker;
    private Spinner threadPicker;
    private Spinner delegatePicker;
    private Button cameraButton;
    private ImageView imageView;
    private TextView selfTestView;
    private TextView resultView;
    private TextView latencyView;
    private TextView statusView;

    @Override
    protected void onCreate(Bundle state) {
        super.onCreate(state);
        store = new AssetStore(getAssets(), getCacheDir());
        buildUi();
        try {
            catalog = store.catalog();
        } catch (IOException | IllegalArgumentException e) {
            statusView.setText("No usable catalog.json in the app's assets (" + e.getMessage()
                    + "). Run `make android-assets VARIANTS=...` and rebuild.");
            return;
        }
        if (catalog.modelFiles().isEmpty()) {
            statusView.setText("The catalog lists no .tflite or .pte files: run `make android-assets VARIANTS=...`.");
            return;
        }
        ArrayAdapter<Catalog.ModelFile> modelFiles = new ArrayAdapter<>(this, android.R.layout.simple_spinner_item,
                catalog.modelFiles());
        modelFiles.setDropDownViewResource(android.R.layout.simple_spinner_dropdown_item);
        variantPicker.setAdapter(modelFiles);
        AdapterView.OnItemSelectedListener reload = new AdapterView.OnItemSelectedListener() {
            @Override
            public void onItemSelected(AdapterView<?> parent, View view, int position, long id) {
                loadSelected();
            }

            @Override
            public void onNothingSelected(AdapterView<?> parent) {
            }
        };
        variantPicker.setOnItemSelectedListener(reload);
        threadPicker.setOnItemSelectedListener(reload);
        delegatePicker.setOnItemSelectedListener(reload);
    }

    private void buildUi() {
        LinearLayout column = new LinearLayout(this);
        column.setOrientation(LinearLayout.VERTICAL);
        int pad = (int) (12 * getResources().getDisplayMetrics().density);
        column.setPadding(pad, pad, pad, pad);

        variantPicker = new Spinner(this);
        column.addView(label("Model (width, resolution, precision)"));
        column.addView(variantPicker);

        List<String> threadNames = new ArrayList<>();
        for (int t : THREADS) {
            threadNames.add(t + (t == 1 ? " thread" : " threads"));
        }
        threadPicker = spinner(threadNames);
        column.addView(label("Threads"));
        column.addView(threadPicker);

        List<String> delegates = new ArrayList<>();
        delegates.add("CPU (XNNPACK)");
        delegates.add(gpuSupported() ? "GPU" : "GPU (not supported on this phone)");
        delegatePicker = spinner(delegates);
        column.addView(label("Delegate"));
        column.addView(delegatePicker);

        LinearLayout buttons = new LinearLayout(this);
        buttons.setOrientation(LinearLayout.HORIZONTAL);
        Button gallery = new Button(this);
        gallery.setText("Gallery image");
        gallery.setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                pickImage();
            }
        });
        cameraButton = new Button(this);
        cameraButton.setText("Camera");
        cameraButton.setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                toggleCamera();
            }
        });
        Button benchmark = new Button(this);
        benchmark.setText("Benchmark all");
        benchmark.setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                runBenchmark();
            }
        });
        buttons.addView(gallery);
        buttons.addView(cameraButton);
        buttons.addView(benchmark);
        column.addView(buttons);

        selfTestView = new TextView(this);
        statusView = new TextView(this);
        imageView = new ImageView(this);
        imageView.setAdjustViewBounds(true);
        imageView.setMaxHeight((int) (260 * getResources().getDisplayMetrics().density));
        resultView = new TextView(this);
        resultView.setTextSize(16);
        latencyView = new TextView(this);
        column.addView(selfTestView);
        column.addView(statusView);
        column.addView(imageView);
        column.addView(resultView);
        column.addView(latencyView);

        ScrollView scroll = new ScrollView(this);
        scroll.addView(column);
        setContentView(scroll);
    }

    private TextView label(String text) {
        TextView view = new TextView(this);
        view.setText(text);
        return view;
    }

    private Spinner spinner(List<String> items) {
        Spinner spinner = new Spinner(this);
        ArrayAdapter<String> adapter = new ArrayAdapter<>(this, android.R.layout.simple_spinner_item, items);
        adapter.setDropDownViewResource(android.R.layout.simple_spinner_dropdown_item);
        spinner.setAdapter(adapter);
        return spinner;
    }

    private static boolean gpuSupported() {
        try {
            return Classifier.gpuAvailable();
        } catch (RuntimeException | UnsatisfiedLinkError e) {
            return false;
        }
    }

    private int threads() {
        return THREADS[threadPicker.getSelectedItemPosition()];
    }

    private Classifier.Delegate delegate() {
        return delegatePicker.getSelectedItemPosition() == 1 ? Classifier.Delegate.GPU : Classifier.Delegate.CPU_XNNPACK;
    }

    /** Load the chosen model with the chosen threads and delegate, then run the self-test. */
    private void loadSelected() {
        final Catalog.ModelFile modelFile = (Catalog.ModelFile) variantPicker.getSelectedItem();
        final int threads = threads();
        final Classifier.Delegate delegate = delegate();
        if (modelFile == null) {
            return;
        }
        selfTestView.setText("Self-test: loading " + modelFile.key + " ...");
        statusView.setText(modelFile.variant.weightsNote());
        worker.execute(new Runnable() {
            @Override
            public void run() {
                latency.clear();
                if (classifier != null) {
                    classifier.close();
                    classifier = null;
                }
                try {
                    classifier = new Classifier(store, modelFile, threads, delegate);
                    final String verdict = selfTest(classifier);
                    final double load = classifier.loadMs;
                    runOnUiThread(new Runnable() {
                        @Override
                        public void run() {
                            selfTestView.setText(verdict);
                            latencyView.setText(String.format(Locale.US, "model load %.1f ms", load));
                        }
                    });
                } catch (IOException | RuntimeException e) {
                    show(selfTestView, "Cannot load " + modelFile.key + " with " + delegate + ": " + e.getMessage());
                }
            }
        });
    }

    /** The golden image through the loaded model, against the top-5 Python computed for the same file. */
    private String selfTest(Classifier loaded) throws IOException {
        String key = loaded.modelFile.key;
        Catalog.GoldenResult expected = catalog.golden.forKey(key, catalog.golden.selfTestImage().name);
        if (expected == null) {
            return "Self-test: no golden result for " + key + " (re-run make android-assets)";
        }
        Bitmap golden = store.goldenImage(catalog);
        Classifier.Result result = loaded.classify(AssetStore.pixels(golden), golden.getWidth(), golden.getHeight(), 5);
        SelfTest.Result check = SelfTest.compare(result.top, expected, BenchmarkRunner.TIE_TOLERANCE);
        return (check.passed ? "Self-test PASSED: " : "Self-test FAILED: ") + check.message
                + " (golden image, " + result.top.get(0) + ")";
    }

    private void classify(final int[] argb, final int width, final int height, final Bitmap shown) {
        worker.execute(new Runnable() {
            @Override
            public void run() {
                try {
                    if (classifier == null) {
                        show(statusView, "No model loaded.");
                        return;
                    }
                    final Classifier.Result result = classifier.classify(argb, width, height, 5);
                    latency.add(result.inferenceMs);
                    final String top = format(result.top);
                    final String timing = String.format(Locale.US,
                            "inference p50 %.2f ms, p90 %.2f ms over the last %d runs; preprocessing %.2f ms; "
                                    + "model load %.1f ms",
                            latency.percentile(50), latency.percentile(90), latency.count(), result.preprocessMs,
                            classifier.loadMs);
                    runOnUiThread(new Runnable() {
                        @Override
                        public void run() {
                            if (shown != null) {
                                imageView.setImageBitmap(shown);
                            }
                            resultView.setText(top);
                            latencyView.setText(timing);
                        }
                    });
                } finally {
                    frameBusy.set(false);
                }
            }
        });
    }

    private static String format(List<TopK.Prediction> top) {
        StringBuilder text = new StringBuilder();
        for (TopK.Prediction p : top) {
            text.append(String.format(Locale.US, "%5.1f%%  %s%n", 100 * p.probability, p.label));
        }
        return text.toString();
    }

    private void pickImage() {
        Intent intent = new Intent(Intent.ACTION_GET_CONTENT);
        intent.setType("image/*");
        startActivityForResult(intent, PICK_IMAGE);
    }

    @Override
    protected void onActivityResult(int requestCode, int resultCode, Intent data) {
        super.onActivityResult(requestCode, resultCode, data);
        if (requestCode != PICK_IMAGE || resultCode != RESULT_OK || data == null || data.getData() == null) {
            return;
        }
        stopCamera();
        try {
            Bitmap bitmap = decode(data.getData());
            classify(AssetStore.pixels(bitmap), bitmap.getWidth(), bitmap.getHeight(), bitmap);
        } catch (IOException e) {
            statusView.setText("Cannot read that image: " + e.getMessage());
        }
    }

    /** Decoded at most ~2 x 1024 px on its shorter side: the crop and resize need no more. */
    private Bitmap decode(Uri uri) throws IOException {
        BitmapFactory.Options bounds = new BitmapFactory.Options();
        bounds.inJustDecodeBounds = true;
        try (InputStream stream = getContentResolver().openInputStream(uri)) {
            BitmapFactory.decodeStream(stream, null, bounds);
        }
        int sample = 1;
        while (Math.min(bounds.outWidth, bounds.outHeight) / (sample * 2) >= 1024) {
            sample *= 2;
        }
        BitmapFactory.Options options = new BitmapFactory.Options();
        options.inSampleSize = sample;
        options.inPreferredConfig = Bitmap.Config.ARGB_8888;
        try (InputStream stream = getContentResolver().openInputStream(uri)) {
            Bitmap bitmap = BitmapFactory.decodeStream(stream, null, options);
            if (bitmap == null) {
                throw new IOException("not an image this phone can decode");
            }
            return bitmap;
        }
    }

    private void toggleCamera() {
        if (camera != null) {
            stopCamera();
            return;
        }
        if (checkSelfPermission(Manifest.permission.CAMERA) != PackageManager.PERMISSION_GRANTED) {
            requestPermissions(new String[]{Manifest.permission.CAMERA}, CAMERA_PERMISSION);
            return;
        }
        startCamera();
    }

    @Override
    public void onRequestPermissionsResult(int requestCode, String[] permissions, int[] results) {
        super.onRequestPermissionsResult(requestCode, permissions, results);
        if (requestCode == CAMERA_PERMISSION) {
            if (results.length > 0 && results[0] == PackageManager.PERMISSION_GRANTED) {
                startCamera();
            } else {
                statusView.setText("Live classification needs the camera permission.");
            }
        }
    }

    private void startCamera() {
        camera = new CameraFrames(this, new CameraFrames.Listener() {
            @Override
            public void onFrame(int[] argb, int width, int height) {
                if (!frameBusy.compareAndSet(false, true)) {
                    return;  // the classifier is still on the previous frame
                }
                Bitmap shown = Bitmap.createBitmap(argb, width, height, Bitmap.Config.ARGB_8888);
                classify(argb, width, height, shown);
            }

            @Override
            public void onError(String message) {
                show(statusView, message);
            }
        });
        try {
            camera.start();
            cameraButton.setText("Stop camera");
        } catch (Exception e) {
            camera = null;
            statusView.setText("Cannot open the camera: " + e.getMessage());
        }
    }

    private void stopCamera() {
        if (camera != null) {
            camera.stop();
            camera = null;
        }
        cameraButton.setText("Camera");
    }

    private void runBenchmark() {
        stopCamera();
        final int threads = threads();
        final Classifier.Delegate delegate = delegate();
        final File folder = getExternalFilesDir(null);
        statusView.setText("Benchmark: starting");
        worker.execute(new Runnable() {
            @Override
            public void run() {
                try {
                    File written = new BenchmarkRunner(store).run(catalog, threads, delegate, BENCHMARK_RUNS,
                            BENCHMARK_WARMUP, folder, new BenchmarkRunner.Progress() {
                                @Override
                                public void update(String message) {
                                    show(statusView, message);
                                }
                            });
                    show(statusView, "Benchmark written: " + written.getAbsolutePath()
                            + "\nadb pull it, then: edgecnn app-report benchmark.json");
                } catch (IOException | RuntimeException e) {
                    show(statusView, "Benchmark failed: " + e.getMessage());
                }
            }
        });
    }

    private void show(final TextView view, final String text) {
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                view.setText(text);
            }
        });
    }

    @Override
    protected void onPause() {
        super.onPause();
        stopCamera();
    }

    @Override
    protected void onDestroy() {
        super.onDestroy();
        worker.execute(new Runnable() {
            @Override
            public void run() {
                if (classifier != null) {
                    classifier.close();
                    classifier = null;
                }
            }
        });
        worker.shutdown();
    }
}
