package dev.edgecnn.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Decoded ARGB pixels to a model's exact input tensor, by the rule in edgecnn/data/preprocess.py:
 * central square crop (side = floor(shorter side x crop fraction), offsets floored), triangle-filter
 * resize whose support widens with the downscale factor, sampled at pixel centres, weights normalised
 * per output pixel, in double; round half to even, clip to 0..255; NHWC, or NCHW for a model that takes
 * planes (the .pte files). Float models take those RGB values; int8 models take each value mapped through
 * the catalog's lookup table of its channel.
 */
public final class Preprocessor {
    private Preprocessor() {
    }

    /** (resolution x resolution x 3) RGB values 0..255, row-major NHWC without the batch axis. */
    public static int[] rgb(int[] argb, int width, int height, int resolution, double cropFraction) {
        if (argb.length != width * height) {
            throw new IllegalArgumentException("pixel count " + argb.length + " is not " + width + " x " + height);
        }
        int side = Math.max(1, (int) Math.floor(Math.min(width, height) * cropFraction));
        int left = (width - side) / 2;
        int top = (height - side) / 2;
        double[][] rows = weights(side, resolution);
        double[][] cols = weights(side, resolution);
        // vertical pass: (resolution rows) x (side columns) x 3
        double[] vertical = new double[resolution * side * 3];
        for (int r = 0; r < resolution; r++) {
            for (int k = 0; k < side; k++) {
                double w = rows[r][k];
                if (w == 0) {
                    continue;
                }
                int source = (top + k) * width + left;
                int target = r * side * 3;
                for (int c = 0; c < side; c++) {
                    int p = argb[source + c];
                    vertical[target + 3 * c] += w * ((p >> 16) & 0xff);
                    vertical[target + 3 * c + 1] += w * ((p >> 8) & 0xff);
                    vertical[target + 3 * c + 2] += w * (p & 0xff);
                }
            }
        }
        int[] out = new int[resolution * resolution * 3];
        for (int r = 0; r < resolution; r++) {
            for (int c = 0; c < resolution; c++) {
                for (int ch = 0; ch < 3; ch++) {
                    double sum = 0;
                    for (int s = 0; s < side; s++) {
                        double w = cols[c][s];
                        if (w != 0) {
                            sum += w * vertical[(r * side + s) * 3 + ch];
                        }
                    }
                    out[(r * resolution + c) * 3 + ch] = (int) Math.max(0, Math.min(255, Math.rint(sum)));
                }
            }
        }
        return out;
    }

    /** (out x in) triangle-filter weights, each row summing to 1. */
    static double[][] weights(int in, int out) {
        double scale = (double) in / out;
        double support = Math.max(scale, 1.0);
        double[][] w = new double[out][in];
        for (int o = 0; o < out; o++) {
            double centre = (o + 0.5) * scale;
            double total = 0;
            for (int i = 0; i < in; i++) {
                w[o][i] = Math.max(0.0, 1.0 - Math.abs(i + 0.5 - centre) / support);
                total += w[o][i];
            }
            for (int i = 0; i < in; i++) {
                w[o][i] /= total;
            }
        }
        return w;
    }

    /** int8 codes through the per-channel lookup table. */
    public static byte[] int8Codes(int[] rgb, int[][] lookupTable) {
        byte[] codes = new byte[rgb.length];
        for (int i = 0; i < rgb.length; i++) {
            codes[i] = (byte) lookupTable[i % 3][rgb[i]];
        }
        return codes;
    }

    /** NHWC values (pixel after pixel, 3 channels each) as NCHW: the R plane, then G, then B. */
    public static int[] planes(int[] nhwc) {
        int pixels = nhwc.length / 3;
        int[] nchw = new int[nhwc.length];
        for (int p = 0; p < pixels; p++) {
            for (int c = 0; c < 3; c++) {
                nchw[c * pixels + p] = nhwc[3 * p + c];
            }
        }
        return nchw;
    }

    /** int8 codes of NCHW values: the lookup table of plane c for the values of plane c. */
    public static byte[] int8CodesOfPlanes(int[] nchw, int[][] lookupTable) {
        int pixels = nchw.length / 3;
        byte[] codes = new byte[nchw.length];
        for (int i = 0; i < nchw.length; i++) {
            codes[i] = (byte) lookupTable[i / pixels][nchw[i]];
        }
        return codes;
    }

    /** The input tensor as the runtime takes it, in the layout the catalog gives: a direct buffer in native order. */
    public static ByteBuffer inputTensor(Catalog.ModelFile modelFile, int[] argb, int width, int height) {
        Catalog.Variant variant = modelFile.variant;
        int[] values = rgb(argb, width, height, variant.resolution, variant.preprocessing.cropFraction);
        boolean nchw = modelFile.input.isNchw();
        if (nchw) {
            values = planes(values);
        }
        if (modelFile.isInt8()) {
            byte[] codes = nchw ? int8CodesOfPlanes(values, modelFile.input.lookupTable)
                    : int8Codes(values, modelFile.input.lookupTable);
            ByteBuffer buffer = ByteBuffer.allocateDirect(codes.length).order(ByteOrder.nativeOrder());
            buffer.put(codes).rewind();
            return buffer;
        }
        ByteBuffer buffer = ByteBuffer.allocateDirect(values.length * 4).order(ByteOrder.nativeOrder());
        for (int v : values) {
            buffer.putFloat(v);
        }
        buffer.rewind();
        return buffer;
    }
}
