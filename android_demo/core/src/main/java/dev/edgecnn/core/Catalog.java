package dev.edgecnn.core;

import com.google.gson.Gson;
import com.google.gson.JsonParseException;
import com.google.gson.annotations.SerializedName;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The app's catalog.json, checked on load: the schema edgecnn/schema/catalog.py writes for both apps
 * (`make android-assets` here, `edgecnn web-demo` for the web page). The app runs the .tflite and .pte files
 * in it; files of other formats (a web build's .onnx) are checked and left out of {@link #modelFiles()}.
 */
public final class Catalog {
    public static final String SCHEMA = "edgecnn.app-catalog/1";
    public static final String FORMAT_TFLITE = "tflite";
    public static final String FORMAT_EXECUTORCH = "executorch";

    public String schema;
    public List<Variant> variants = new ArrayList<>();
    public Golden golden;
    public Map<String, String> runtimes;    // package -> version, where the build recorded them

    private transient List<ModelFile> runnable = Collections.emptyList();

    /** An exported variant: a model at one width and resolution, with its bundled files. */
    public static final class Variant {
        @SerializedName("variant")
        public String id;           // the export's variant id, e.g. mobilenet_v2_a0.35_r128
        public String model;
        public double alpha;
        public int resolution;
        public int numClasses;
        public String labels;       // asset path of the label file, one name per line
        public String weights;      // in words
        public Preprocessing preprocessing;
        public List<ModelFile> files = new ArrayList<>();
        public boolean trained = true;  // false: random weights, whose classes mean nothing

        /** What the app says of the weights beside the model's name: empty for a trained classifier. */
        public String weightsNote() {
            return trained ? "" : "random weights, not a trained classifier: its classes mean nothing";
        }
    }

    /** One bundled model file: a variant at one precision in one format. */
    public static final class ModelFile {
        public String key;          // unique in the catalog: <variant id>/<file name>
        public String file;         // asset path of the .tflite or .pte
        public String format;       // "tflite" or "executorch" (what this app runs), "onnx" (the web page's)
        public String precision;    // "int8" or "fp32"
        public String runtime;      // the runtime the catalog's app runs it with, in words
        public String sha256;
        public long bytes;
        public TensorSpec input;
        public TensorSpec output;
        public transient Variant variant;   // the variant this file belongs to, linked by parse()

        public boolean isInt8() {
            return "int8".equals(input.dtype);
        }

        public boolean isExecuTorch() {
            return FORMAT_EXECUTORCH.equals(format);
        }

        @Override
        public String toString() {
            return variant.model + "  \u03b1 " + variant.alpha + "  " + variant.resolution + " px  " + precision
                    + (isExecuTorch() ? "  .pte" : "");
        }
    }

    /** The rule that turns a decoded image into the model's input (edgecnn/data/preprocess.py). */
    public static final class Preprocessing {
        public double cropFraction;
        public String color;
    }

    public static final class TensorSpec {
        public String dtype;        // "int8" or "float32"
        public int[] shape;         // batch 1: input [1, R, R, 3] (NHWC) or [1, 3, R, R] (NCHW), output [1, classes]
        public String layout;       // input only: "NHWC" (the .tflite files) or "NCHW" (the .pte files)
        public Float scale;         // quantized tensors only
        public Integer zeroPoint;
        public int[][] lookupTable; // int8 input: code of each 0..255 value, per RGB channel

        public boolean isNchw() {
            return "NCHW".equals(layout);
        }
    }

    /** The golden images and what Python computed for each (model file, image): the self-test compares. */
    public static final class Golden {
        public List<GoldenImage> images = new ArrayList<>();
        public List<GoldenResult> results = new ArrayList<>();

        /** The image the app's self-test and benchmark run: the first. */
        public GoldenImage selfTestImage() {
            return images.get(0);
        }

        public GoldenResult forKey(String key, String image) {
            for (GoldenResult r : results) {
                if (r.key.equals(key) && r.image.equals(image)) {
                    return r;
                }
            }
            return null;
        }
    }

    public static final class GoldenImage {
        public String name;
        public String file;         // asset path of a lossless PNG
        public String source;
        public int width;
        public int height;
    }

    public static final class GoldenResult {
        public String key;          // the model file's
        public String image;        // the golden image's name
        public String inputTensor;  // asset path: the exact input bytes (int8 codes, or float32 little-endian)
        public String outputTensor; // asset path: the raw output the Python runtime produced
        public int[] top5;          // class indices, best first
        public float[] top5Scores;  // softmax probabilities
    }

    /** The model files this app runs (.tflite and .pte), in catalog order, each linked to its variant. */
    public List<ModelFile> modelFiles() {
        return runnable;
    }

    public static Catalog parse(String json) {
        Catalog catalog;
        try {
            catalog = new Gson().fromJson(json, Catalog.class);
        } catch (JsonParseException e) {
            throw new IllegalArgumentException("catalog.json is not valid JSON: " + e.getMessage(), e);
        }
        if (catalog == null || !SCHEMA.equals(catalog.schema)) {
            throw new IllegalArgumentException("catalog.json has schema "
                    + (catalog == null ? "none" : catalog.schema) + ", this app reads " + SCHEMA);
        }
        if (catalog.golden == null || catalog.golden.images == null || catalog.golden.images.isEmpty()
                || catalog.golden.results == null) {
            throw new IllegalArgumentException("catalog.json names no golden image");
        }
        List<ModelFile> runnable = new ArrayList<>();
        for (Variant v : catalog.variants) {
            check(v);
            for (ModelFile f : v.files) {
                f.variant = v;
                check(f);
                if (FORMAT_TFLITE.equals(f.format) || FORMAT_EXECUTORCH.equals(f.format)) {
                    runnable.add(f);
                }
            }
        }
        catalog.runnable = Collections.unmodifiableList(runnable);
        return catalog;
    }

    private static void check(Variant v) {
        if (v.id == null || v.labels == null || v.preprocessing == null || v.files == null) {
            throw new IllegalArgumentException("catalog variant " + v.id + " lacks a field");
        }
        if (!(v.preprocessing.cropFraction > 0 && v.preprocessing.cropFraction <= 1)) {
            throw new IllegalArgumentException(v.id + ": crop fraction must be in (0, 1]");
        }
    }

    private static void check(ModelFile f) {
        if (f.key == null || f.file == null || f.format == null || f.input == null || f.output == null) {
            throw new IllegalArgumentException("catalog model file " + f.key + " lacks a field");
        }
        if (f.isExecuTorch() && !f.input.isNchw()) {
            throw new IllegalArgumentException(f.key + ": a .pte takes NCHW planes, not " + f.input.layout);
        }
        int r = f.variant.resolution;
        int[] expected = f.input.isNchw() ? new int[]{1, 3, r, r} : new int[]{1, r, r, 3};
        if (!"NHWC".equals(f.input.layout) && !f.input.isNchw()) {
            throw new IllegalArgumentException(f.key + ": input layout " + f.input.layout + " is not NHWC or NCHW");
        }
        if (!Arrays.equals(f.input.shape, expected)) {
            throw new IllegalArgumentException(f.key + ": input shape is not " + Arrays.toString(expected)
                    + " (" + f.input.layout + " at R = " + r + ")");
        }
        if (f.isInt8()) {
            int[][] t = f.input.lookupTable;
            if (t == null || t.length != 3 || t[0].length != 256 || t[1].length != 256 || t[2].length != 256) {
                throw new IllegalArgumentException(f.key + ": an int8 input needs a 3 x 256 lookup table");
            }
        } else if (!"float32".equals(f.input.dtype)) {
            throw new IllegalArgumentException(f.key + ": input dtype " + f.input.dtype + " is not int8 or float32");
        }
        if ("int8".equals(f.output.dtype) && (f.output.scale == null || f.output.zeroPoint == null)) {
            throw new IllegalArgumentException(f.key + ": an int8 output needs its scale and zero point");
        }
    }
}
