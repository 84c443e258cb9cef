package dev.edgecnn.core;

import com.google.gson.GsonBuilder;
import java.util.ArrayList;
import java.util.List;

/** The benchmark mode's JSON: `adb pull` it, then `edgecnn app-report FILE` puts it into a report. */
public final class BenchmarkReport {
    public static final String SCHEMA = "edgecnn.app-benchmark/1";

    public String schema = SCHEMA;
    public Device device = new Device();
    public String image;
    public int runs;
    public int warmup;
    public List<Entry> results = new ArrayList<>();

    public static final class Device {
        public String manufacturer;
        public String model;
        public String android;
        public int sdk;
        public String abi;
    }

    public static final class Entry {
        public String key;
        public String variant;
        public String model;
        public double alpha;
        public int resolution;
        public String precision;
        public String sha256;
        public String delegate;
        public int threads;
        public double loadMs;
        public double firstRunMs;
        public double[] latencyMs;
        public double p50Ms;
        public double p90Ms;
        public double minMs;
        public int[] top5;
        public boolean matchesPython;
        public String selfTest;
        public String error;   // set when this variant could not run with this delegate

        /** An entry for one model file of the catalog, run with this delegate and thread count. */
        public static Entry of(Catalog.ModelFile modelFile, String delegate, int threads) {
            Entry entry = new Entry();
            entry.key = modelFile.key;
            entry.variant = modelFile.variant.id;
            entry.model = modelFile.variant.model;
            entry.alpha = modelFile.variant.alpha;
            entry.resolution = modelFile.variant.resolution;
            entry.precision = modelFile.precision;
            entry.sha256 = modelFile.sha256;
            entry.delegate = delegate;
            entry.threads = threads;
            return entry;
        }

        /** Fills the summary statistics from the per-run latencies. */
        public void summarize() {
            p50Ms = LatencyStats.percentile(latencyMs, 50);
            p90Ms = LatencyStats.percentile(latencyMs, 90);
            double min = Double.POSITIVE_INFINITY;
            for (double v : latencyMs) {
                min = Math.min(min, v);
            }
            minMs = min;
        }
    }

    public String toJson() {
        return new GsonBuilder().setPrettyPrinting().serializeSpecialFloatingPointValues().create().toJson(this);
    }
}
