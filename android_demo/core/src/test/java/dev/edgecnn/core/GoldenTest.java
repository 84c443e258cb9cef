package dev.edgecnn.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;

import java.awt.image.BufferedImage;
import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.MessageDigest;
import java.util.Arrays;
import java.util.List;
import javax.imageio.ImageIO;
import org.junit.Test;

/**
 * Golden files written by Python (`make android-assets`): for the golden photo and each bundled model the
 * Java core must build the exact input tensor Python built, and rank Python's raw output the same way.
 * The assets folder comes from the system property edgecnn.assets (set by the pytest that runs this).
 */
public class GoldenTest {
    private static File assets() {
        String path = System.getProperty("edgecnn.assets");
        assertNotNull("set -Dedgecnn.assets to a folder written by make android-assets", path);
        return new File(path);
    }

    private static byte[] read(String relative) throws IOException {
        return Files.readAllBytes(new File(assets(), relative).toPath());
    }

    @Test
    public void javaReproducesPythonsInputTensorsAndTop5() throws Exception {
        Catalog catalog = Catalog.parse(new String(read("catalog.json"), StandardCharsets.UTF_8));
        assertFalse("the catalog lists no models", catalog.variants.isEmpty());
        BufferedImage image = ImageIO.read(new File(assets(), catalog.golden.image));
        int width = image.getWidth();
        int height = image.getHeight();
        int[] argb = image.getRGB(0, 0, width, height, null, 0, width);
        for (Catalog.Variant variant : catalog.variants) {
            Catalog.GoldenResult golden = catalog.golden.forKey(variant.key);
            assertNotNull("no golden result for " + variant.key, golden);

            ByteBuffer tensor = Preprocessor.inputTensor(variant, argb, width, height);
            byte[] expected = read(golden.inputTensor);
            byte[] actual = new byte[tensor.remaining()];
            if (variant.isInt8()) {
                tensor.get(actual);
            } else {  // the golden file is little-endian float32
                ByteBuffer little = ByteBuffer.allocate(actual.length).order(ByteOrder.LITTLE_ENDIAN);
                while (tensor.hasRemaining()) {
                    little.putFloat(tensor.getFloat());
                }
                actual = little.array();
            }
            assertArrayEquals(variant.key + ": input tensor differs from Python's", expected, actual);

            ByteBuffer raw = ByteBuffer.allocateDirect(read(golden.outputTensor).length).order(ByteOrder.nativeOrder());
            ByteBuffer output = ByteBuffer.wrap(read(golden.outputTensor)).order(ByteOrder.LITTLE_ENDIAN);
            if ("int8".equals(variant.output.dtype)) {
                raw.put(output);
            } else {
                while (output.hasRemaining()) {
                    raw.putFloat(output.getFloat());
                }
            }
            List<TopK.Prediction> top = TopK.top(TopK.logits(variant.output, raw, variant.numClasses), 5, null);
            int[] indices = new int[top.size()];
            float[] scores = new float[top.size()];
            for (int i = 0; i < top.size(); i++) {
                indices[i] = top.get(i).index;
                scores[i] = top.get(i).probability;
            }
            assertArrayEquals(variant.key + ": top-5 differs from Python's", golden.top5, indices);
            assertArrayEquals(variant.key + ": probabilities differ", golden.top5Scores, scores, 1e-6f);
            assertTrue(SelfTest.compare(top, golden, 1e-3).passed);
        }
    }

    /** A report as benchmark mode writes it, for `edgecnn app-report` to read (the pytest checks that side). */
    @Test
    public void benchmarkReportJsonIsWrittenForPython() throws Exception {
        String target = System.getProperty("edgecnn.benchmarkOut");
        if (target == null) {
            return;  // only the cross-language pytest asks for the file
        }
        Catalog catalog = Catalog.parse(new String(read("catalog.json"), StandardCharsets.UTF_8));
        BenchmarkReport report = new BenchmarkReport();
        report.device.manufacturer = "JVM";
        report.device.model = System.getProperty("java.vm.name");
        report.device.android = "none";
        report.device.abi = System.getProperty("os.arch");
        report.image = catalog.golden.image;
        report.runs = 4;
        report.warmup = 1;
        for (Catalog.Variant variant : catalog.variants) {
            BenchmarkReport.Entry entry = BenchmarkReport.Entry.of(variant, "CPU_XNNPACK", 1);
            entry.loadMs = 12.5;
            entry.firstRunMs = 9.0;
            entry.latencyMs = new double[]{4.0, 3.0, 5.0, 3.5};  // made-up timings: the JVM runs no model
            entry.summarize();
            entry.top5 = catalog.golden.forKey(variant.key).top5;
            entry.matchesPython = true;
            entry.selfTest = "top-5 identical to Python's";
            report.results.add(entry);
        }
        Files.write(new File(target).toPath(), report.toJson().getBytes(StandardCharsets.UTF_8));
    }

    @Test
    public void everyModelFileIsTheOneTheManifestListed() throws Exception {
        Catalog catalog = Catalog.parse(new String(read("catalog.json"), StandardCharsets.UTF_8));
        for (Catalog.Variant variant : catalog.variants) {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(read(variant.file));
            StringBuilder hex = new StringBuilder();
            for (byte b : digest) {
                hex.append(String.format("%02x", b));
            }
            assertEquals(variant.key, variant.sha256, hex.toString());
            List<String> labels = Arrays.asList(new String(read(variant.labels), StandardCharsets.UTF_8).split("\n"));
            assertEquals(variant.key + ": labels", variant.numClasses, labels.size());
        }
    }
}
