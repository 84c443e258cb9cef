package dev.edgecnn.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;

/** Does the phone's top-5 on the golden image agree with what Python computed for the same model file? */
public final class SelfTest {
    private SelfTest() {
    }

    public static final class Result {
        public final boolean passed;
        public final String message;

        Result(boolean passed, String message) {
            this.passed = passed;
            this.message = message;
        }
    }

    /**
     * Passed when the top-1 class is Python's and the top-5 holds the same classes; their order may
     * differ only where Python's own probabilities are within {@code tieTolerance} of each other
     * (another CPU's float rounding can swap near ties).
     */
    public static Result compare(List<TopK.Prediction> phone, Catalog.GoldenResult expected, double tieTolerance) {
        int n = Math.min(phone.size(), expected.top5.length);
        int[] got = new int[n];
        for (int i = 0; i < n; i++) {
            got[i] = phone.get(i).index;
        }
        int[] want = Arrays.copyOf(expected.top5, n);
        if (Arrays.equals(got, want)) {
            return new Result(true, "top-5 identical to Python's");
        }
        int[] gotSorted = got.clone();
        int[] wantSorted = want.clone();
        Arrays.sort(gotSorted);
        Arrays.sort(wantSorted);
        if (!Arrays.equals(gotSorted, wantSorted)) {
            return new Result(false, "top-5 " + Arrays.toString(got) + " differs from Python's " + Arrays.toString(want));
        }
        StringBuilder swaps = new StringBuilder();
        for (int i = 0; i < n; i++) {
            if (got[i] != want[i] && !nearTie(expected, i, got[i], tieTolerance)) {
                return new Result(false, "rank " + (i + 1) + " is class " + got[i] + ", Python's is " + want[i]);
            }
            if (got[i] != want[i]) {
                swaps.append(swaps.length() == 0 ? "" : ", ").append(i + 1);
            }
        }
        return new Result(true, "same top-5 classes; near ties swapped at ranks " + swaps);
    }

    /**
     * Null when the phone's input tensor is Python's byte for byte; otherwise one line naming the preprocessing
     * (not the model file) and the first differing value's pixel and channel. Both are the tensor's bytes: int8
     * codes, or little-endian float32 values.
     */
    public static String inputDifference(byte[] python, byte[] phone, Catalog.ModelFile modelFile) {
        int width = modelFile.isInt8() ? 1 : 4;
        int values = python.length / width;
        if (phone.length != python.length) {
            return "the input tensor has " + phone.length / width + " values, Python's " + values;
        }
        int differing = 0;
        int first = -1;
        for (int v = 0; v < values; v++) {
            boolean same = true;
            for (int b = v * width; b < (v + 1) * width; b++) {
                same &= python[b] == phone[b];
            }
            if (!same) {
                differing++;
                first = first < 0 ? v : first;
            }
        }
        if (differing == 0) {
            return null;
        }
        int resolution = modelFile.variant.resolution;
        int pixels = resolution * resolution;
        boolean nchw = modelFile.input.isNchw();
        int pixel = nchw ? first % pixels : first / 3;
        int channel = nchw ? first / pixels : first % 3;
        return "the input differs from Python's (the preprocessing, not the model file): " + differing + " of "
                + values + " values, first at pixel (row " + pixel / resolution + ", column " + pixel % resolution
                + ") " + new String[]{"red", "green", "blue"}[channel] + ": phone " + valueAt(phone, first, width)
                + ", Python " + valueAt(python, first, width);
    }

    private static String valueAt(byte[] tensor, int index, int width) {
        if (width == 1) {
            return Integer.toString(tensor[index]);
        }
        return Float.toString(ByteBuffer.wrap(tensor, index * 4, 4).order(ByteOrder.LITTLE_ENDIAN).getFloat());
    }

    private static boolean nearTie(Catalog.GoldenResult expected, int rank, int phoneClass, double tolerance) {
        for (int j = 0; j < expected.top5.length; j++) {
            if (expected.top5[j] == phoneClass) {
                return Math.abs(expected.top5Scores[j] - expected.top5Scores[rank]) <= tolerance;
            }
        }
        return false;
    }
}
