package dev.edgecnn.core;

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

    private static boolean nearTie(Catalog.GoldenResult expected, int rank, int phoneClass, double tolerance) {
        for (int j = 0; j < expected.top5.length; j++) {
            if (expected.top5[j] == phoneClass) {
                return Math.abs(expected.top5Scores[j] - expected.top5Scores[rank]) <= tolerance;
            }
        }
        return false;
    }
}
