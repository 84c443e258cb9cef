package dev.edgecnn.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Decoded ARGB pixels to a model's exact input tensor, by the integer rule in edgecnn/data/preprocess.py:
 * central square crop (side = floor(shorter side x crop fraction), offsets floored), triangle-filter
 * resize whose support widens with the downscale factor, sampled at pixel centres, with 20-bit integer
 * coefficients; rows then columns summed in longs, one rounding half up, clip to 0..255; NHWC, or NCHW for a
 * model that takes planes (the .pte files). Float models take those RGB values; int8 models take each value
 * mapped through the catalog's lookup table of its channel.
 */
public final class Preprocessor {
    static final int COEFFICIENT_BITS = 20;

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
        Taps taps = coefficients(side, resolution);
        // rows first: (resolution rows) x (side columns) x 3, exact integer sums
        long[] vertical = new long[resolution * side * 3];
        for (int r = 0; r < resolution; r++) {
            long[] q = taps.coefficients[r];
            for (int k = 0; k < q.length; k++) {
                int source = (top + taps.first[r] + k) * width + left;
                int target = r * side * 3;
                for (int c = 0; c < side; c++) {
                    int p = argb[source + c];
                    vertical[target + 3 * c] += q[k] * ((p >> 16) & 0xff);
                    vertical[target + 3 * c + 1] += q[k] * ((p >> 8) & 0xff);
                    vertical[target + 3 * c + 2] += q[k] * (p & 0xff);
                }
            }
        }
        long half = 1L << (2 * COEFFICIENT_BITS - 1);
        int[] out = new int[resolution * resolution * 3];
        for (int r = 0; r < resolution; r++) {
            for (int c = 0; c < resolution; c++) {
                long[] q = taps.coefficients[c];
                int first = taps.first[c];
                for (int ch = 0; ch < 3; ch++) {
                    long sum = 0;
                    for (int k = 0; k < q.length; k++) {
                        sum += q[k] * vertical[(r * side + first + k) * 3 + ch];
                    }
                    long value = (sum + half) >> (2 * COEFFICIENT_BITS);
                    out[(r * resolution + c) * 3 + ch] = (int) Math.max(0, Math.min(255, value));
                }
            }
        }
        return out;
    }

    /** Each output's non-zero coefficients, from input index first[o] on. */
    static final class Taps {
        final int[] first;
        final long[][] coefficients;

        Taps(int[] first, long[][] coefficients) {
            this.first = first;
            this.coefficients = coefficients;
        }
    }

    /**
     * Fixed-point triangle-filter coefficients: with M = max(in, out), output o weighs input i by
     * u = max(0, 2M - |(2i + 1) out - (2o + 1) in|), and q = round half up (u x 2^20 / sum of u).
     */
    static Taps coefficients(int in, int out) {
        long longer = Math.max(in, out);
        int[] first = new int[out];
        long[][] coefficients = new long[out][];
        for (int o = 0; o < out; o++) {
            long[] u = new long[in];
            long total = 0;
            int low = in;
            int high = -1;
            for (int i = 0; i < in; i++) {
                long distance = Math.abs((2L * i + 1) * out - (2L * o + 1) * in);
                u[i] = Math.max(0, 2 * longer - distance);
                total += u[i];
                if (u[i] > 0) {
                    low = Math.min(low, i);
                    high = i;
                }
            }
            first[o] = low;
            coefficients[o] = new long[high - low + 1];
            for (int i = low; i <= high; i++) {
                coefficients[o][i - low] = ((u[i] << (COEFFICIENT_BITS + 1)) + total) / (2 * total);
            }
        }
        return new Taps(first, coefficients);
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
