package dev.edgecnn.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/** From a model's raw output to ranked class probabilities: dequantize, softmax (in double), top k. */
public final class TopK {
    private TopK() {
    }

    public static final class Prediction {
        public final int index;
        public final String label;
        public final float probability;

        Prediction(int index, String label, float probability) {
            this.index = index;
            this.label = label;
            this.probability = probability;
        }

        @Override
        public String toString() {
            return String.format("%s %.1f%%", label, 100 * probability);
        }
    }

    /** Logits from the output buffer (int8 dequantized with the tensor's scale and zero point). */
    public static float[] logits(Catalog.TensorSpec output, ByteBuffer raw, int classes) {
        ByteBuffer buffer = raw.duplicate().order(ByteOrder.nativeOrder());
        buffer.rewind();
        float[] values = new float[classes];
        if ("int8".equals(output.dtype)) {
            for (int i = 0; i < classes; i++) {
                values[i] = (buffer.get(i) - output.zeroPoint) * output.scale;
            }
        } else {
            for (int i = 0; i < classes; i++) {
                values[i] = buffer.getFloat(4 * i);
            }
        }
        return values;
    }

    public static double[] softmax(float[] logits) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : logits) {
            max = Math.max(max, v);
        }
        double[] p = new double[logits.length];
        double sum = 0;
        for (int i = 0; i < logits.length; i++) {
            p[i] = Math.exp(logits[i] - max);
            sum += p[i];
        }
        for (int i = 0; i < p.length; i++) {
            p[i] /= sum;
        }
        return p;
    }

    /** The k most probable classes, best first; ties keep the lower class index first (a stable order). */
    public static List<Prediction> top(float[] logits, int k, List<String> labels) {
        double[] p = softmax(logits);
        k = Math.min(k, p.length);
        boolean[] taken = new boolean[p.length];
        List<Prediction> result = new ArrayList<>(k);
        for (int n = 0; n < k; n++) {
            int best = -1;
            for (int i = 0; i < p.length; i++) {
                if (!taken[i] && (best < 0 || p[i] > p[best])) {
                    best = i;
                }
            }
            taken[best] = true;
            String label = labels != null && best < labels.size() ? labels.get(best) : "class " + best;
            result.add(new Prediction(best, label, (float) p[best]));
        }
        return result;
    }
}
