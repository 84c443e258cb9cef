package dev.edgecnn.core;

import com.google.gson.Gson;
import com.google.gson.JsonParseException;
import java.util.ArrayList;
import java.util.List;

/** The app's catalog.json (written by `make android-assets` from the export manifests), checked on load. */
public final class Catalog {
    public static final String SCHEMA = "edgecnn.android-catalog/1";
    public static final String RUNTIME_LITERT = "litert";
    public static final String RUNTIME_EXECUTORCH = "executorch";

    public String schema;
    public List<Variant> variants = new ArrayList<>();
    public Golden golden;

    /** One bundled model file: a width/resolution variant at one precision. */
    public static final class Variant {
        public String key;          // unique in the catalog, e.g. mobilenet_v2_a0.35_r128/int8
        public String variant;      // the export's variant id
        public String model;
        public double alpha;
        public int resolution;
        public String precision;    // "int8" or "fp32"
        public String file;         // asset path of the .tflite or .pte
        public String runtime;      // "litert" (a .tflite) or "executorch" (a .pte)
        public String sha256;
        public long bytes;
        public String labels;       // asset path of the label file, one name per line
        public int numClasses;
        public Preprocessing preprocessing;
        public TensorSpec input;
        public TensorSpec output;

        public boolean isInt8() {
            return "int8".equals(input.dtype);
        }

        public boolean isExecuTorch() {
            return RUNTIME_EXECUTORCH.equals(runtime);
        }

        @Override
        public String toString() {
            return model + "  \u03b1 " + alpha + "  " + resolution + " px  " + precision
                    + (isExecuTorch() ? "  .pte" : "");
        }
    }

    /** The rule that turns a decoded image into the model's input (edgecnn/preprocess.py). */
    public static final class Preprocessing {
        public double cropFraction;
        public String color;
    }

    public static final class TensorSpec {
        public String dtype;        // "int8" or "float32"
        public int[] shape;         // [1, R, R, 3] (NHWC) or [1, 3, R, R] (NCHW) for the input, [1, classes] for the output
        public String layout;       // input only: "NHWC" (the .tflite files) or "NCHW" (the .pte files)
        public Float scale;         // quantized tensors only
        public Integer zeroPoint;
        public int[][] lookupTable; // int8 input: code of each 0..255 value, per RGB channel

        public boolean isNchw() {
            return "NCHW".equals(layout);
        }
    }

    /** What Python computed for the bundled golden image: the self-test compares against it. */
    public static final class Golden {
        public String image;
        public List<GoldenResult> results = new ArrayList<>();

        public GoldenResult forKey(String key) {
            for (GoldenResult r : results) {
                if (r.key.equals(key)) {
                    return r;
                }
            }
            return null;
        }
    }

    public static final class GoldenResult {
        public String key;
        public String inputTensor;  // asset path: the exact input bytes (int8 codes, or float32 little-endian)
        public String outputTensor; // asset path: the raw output the Python runtime produced
        public int[] top5;          // class indices, best first
        public float[] top5Scores;  // softmax probabilities
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
        for (Variant v : catalog.variants) {
            check(v);
        }
        return catalog;
    }

    private static void check(Variant v) {
        if (v.key == null || v.file == null || v.input == null || v.output == null || v.preprocessing == null) {
            throw new IllegalArgumentException("catalog variant " + v.key + " lacks a field");
        }
        if (!RUNTIME_LITERT.equals(v.runtime) && !RUNTIME_EXECUTORCH.equals(v.runtime)) {
            throw new IllegalArgumentException(v.key + ": runtime " + v.runtime + " is neither litert nor executorch");
        }
        int r = v.resolution;
        int[] expected = v.input.isNchw() ? new int[]{1, 3, r, r} : new int[]{1, r, r, 3};
        if (!"NHWC".equals(v.input.layout) && !v.input.isNchw()) {
            throw new IllegalArgumentException(v.key + ": input layout " + v.input.layout + " is neither NHWC nor NCHW");
        }
        if (!java.util.Arrays.equals(v.input.shape, expected)) {
            throw new IllegalArgumentException(v.key + ": input shape is not " + java.util.Arrays.toString(expected)
                    + " (" + v.input.layout + " at R = " + r + ")");
        }
        if (v.isInt8()) {
            int[][] t = v.input.lookupTable;
            if (t == null || t.length != 3 || t[0].length != 256 || t[1].length != 256 || t[2].length != 256) {
                throw new IllegalArgumentException(v.key + ": an int8 input needs a 3 x 256 lookup table");
            }
        } else if (!"float32".equals(v.input.dtype)) {
            throw new IllegalArgumentException(v.key + ": input dtype " + v.input.dtype + " is neither int8 nor float32");
        }
        if ("int8".equals(v.output.dtype) && (v.output.scale == null || v.output.zeroPoint == null)) {
            throw new IllegalArgumentException(v.key + ": an int8 output needs its scale and zero point");
        }
        if (!(v.preprocessing.cropFraction > 0 && v.preprocessing.cropFraction <= 1)) {
            throw new IllegalArgumentException(v.key + ": crop fraction must be in (0, 1]");
        }
    }
}
