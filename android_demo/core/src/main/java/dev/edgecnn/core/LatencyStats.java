package dev.edgecnn.core;

import java.util.Arrays;

/** Latency over the last N runs: percentiles by linear interpolation between order statistics
 * (numpy's default, which edgecnn's Python side reports too). */
public final class LatencyStats {
    private final double[] window;
    private int count;
    private int next;

    public LatencyStats(int size) {
        if (size < 1) {
            throw new IllegalArgumentException("window size must be at least 1");
        }
        window = new double[size];
    }

    public synchronized void add(double milliseconds) {
        window[next] = milliseconds;
        next = (next + 1) % window.length;
        count = Math.min(count + 1, window.length);
    }

    public synchronized int count() {
        return count;
    }

    public synchronized double[] values() {
        return Arrays.copyOf(window, count);
    }

    public synchronized void clear() {
        count = 0;
        next = 0;
    }

    public double percentile(double q) {
        return percentile(values(), q);
    }

    public static double percentile(double[] values, double q) {
        if (values.length == 0) {
            return Double.NaN;
        }
        if (q < 0 || q > 100) {
            throw new IllegalArgumentException("percentile must be in 0..100");
        }
        double[] sorted = values.clone();
        Arrays.sort(sorted);
        double position = q / 100.0 * (sorted.length - 1);
        int low = (int) Math.floor(position);
        int high = Math.min(low + 1, sorted.length - 1);
        return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
    }
}
