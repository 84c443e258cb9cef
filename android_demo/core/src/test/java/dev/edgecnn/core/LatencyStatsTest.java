package dev.edgecnn.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import org.junit.Test;

public class LatencyStatsTest {
    @Test
    public void percentilesInterpolateLikeNumpy() {
        double[] values = {4, 1, 3, 2, 10};
        // numpy.percentile([1, 2, 3, 4, 10], [50, 90]) = 3.0, 7.6
        assertEquals(3.0, LatencyStats.percentile(values, 50), 1e-12);
        assertEquals(7.6, LatencyStats.percentile(values, 90), 1e-12);
        assertEquals(1.0, LatencyStats.percentile(values, 0), 1e-12);
    }

    @Test
    public void onlyTheLastRunsCount() {
        LatencyStats stats = new LatencyStats(3);
        for (double v : new double[]{100, 1, 2, 3}) {
            stats.add(v);
        }
        assertEquals(3, stats.count());
        assertArrayEquals(new double[]{3, 1, 2}, stats.values(), 0);
        assertEquals(2.0, stats.percentile(50), 1e-12);
        stats.clear();
        assertTrue(Double.isNaN(stats.percentile(50)));
    }
}
