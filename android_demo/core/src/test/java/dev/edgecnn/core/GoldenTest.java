package dev.edgecnn.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
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
 * Golden files written by Python (`make android-assets`): for each golden image and each model file the app
 * runs, the Java core must build the exact input tensor Python built, and rank Python's raw output the same
 * way. The folder comes from the system property edgecnn.assets (set by the pytest that runs this): the
 * app's assets, or a web demo site, whose catalog has the same schema.
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
        assertFalse("the catalog lists no model file this app runs", catalog.modelFiles().isEmpty());
        for (Catalog.GoldenImage image : catalog.golden.images) {
            BufferedImage decoded = ImageIO.read(new File(assets(), image.file));
            int width = decoded.getWidth();
            int height = decoded.getHeight();
            assertEquals(image.name + ": size", image.width + "x" + image.height, width + "x" + height);
            int[] argb = decoded.getRGB(0, 0, width, height, null, 0, width);
            for (Catalog.ModelFile modelFile : catalog.modelFiles()) {
                checkAgainstPython(modelFile, catalog.golden.forKey(modelFile.key, image.name), argb, width, height);
            }
        }
    }

    private static void checkAgainstPython(Catalog.ModelFile modelFile, Catalog.GoldenResult golden, int[] argb,
                                           int width, int height) throws IOException {
        String what = modelFile.key + (golden == null ? "" : " on " + golden.image);
        assertNotNull("no golden result for " + what, golden);
        ByteBuffer tensor = Preprocessor.inputTensor(modelFile, argb, width, height);
        byte[] expected = read(golden.inputTensor);
        byte[] actual = new byte[tensor.remaining()];
        if (modelFile.isInt8()) {
            tensor.get(actual);
        } else {  // the golden file is little-endian float32
            ByteBuffer little = ByteBuffer.allocate(actual.length).order(ByteOrder.LITTLE_ENDIAN);
            while (tensor.hasRemaining()) {
                little.putFloat(tensor.getFloat());
            }
            actual = little.array();
        }
        String difference = SelfTest.inputDifference(expected, actual, modelFile);
        assertNull(what + ": " + difference, difference);

        ByteBuffer raw = ByteBuffer.allocateDirect(read(golden.outputTensor).length).order(ByteOrder.nativeOrder());
        ByteBuffer output = ByteBuffer.wrap(read(golden.outputTensor)).order(ByteOrder.LITTLE_ENDIAN);
        if ("int8".equals(modelFile.output.dtype)) {
            raw.put(output);
        } else {
            while (output.hasRemaining()) {
                raw.putFloat(output.getFloat());
            }
        }
        List<TopK.Prediction> top = TopK.top(TopK.logits(modelFile.output, raw, modelFile.variant.numClasses), 5, null);
        int[] indices = new int[top.size()];
        float[] scores = new float[top.size()];
        for (int i = 0; i < top.size(); i++) {
            indices[i] = top.get(i).index;
            scores[i] = top.get(i).probability;
        }
        assertArrayEquals(what + ": top-5 differs from Python's", golden.top5, indices);
        assertArrayEquals(what + ": probabilities differ", golden.top5Scores, scores, 1e-6f);
        assertTrue(SelfTest.compare(top, golden, 1e-3).passed);
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
        Catalog.GoldenImage image = catalog.golden.selfTestImage();
        report.image = image.file;
        report.runs = 4;
        report.warmup = 1;
        for (Catalog.ModelFile modelFile : catalog.modelFiles()) {
            BenchmarkReport.Entry entry = BenchmarkReport.Entry.of(modelFile, "CPU_XNNPACK", 1);
            entry.loadMs = 12.5;
            entry.firstRunMs = 9.0;
            entry.latencyMs = new double[]{4.0, 3.0, 5.0, 3.5};  // made-up timings: the JVM runs no model
            entry.summarize();
            entry.top5 = catalog.golden.forKey(modelFile.key, image.name).top5;
            entry.matchesPython = true;
            entry.selfTest = "top-5 identical to Python's";
            report.results.add(entry);
        }
        Files.write(new File(target).toPath(), report.toJson().getBytes(StandardCharsets.UTF_8));
    }

    @Test
    public void everyModelFileIsTheOneTheManifestListed() throws Exception {
        Catalog catalog = Catalog.parse(new String(read("catalog.json"), StandardCharsets.UTF_8));
        for (Catalog.ModelFile modelFile : catalog.modelFiles()) {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(read(modelFile.file));
            StringBuilder hex = new StringBuilder();
            for (byte b : digest) {
                hex.append(String.format("%02x", b));
            }
            assertEquals(modelFile.key, modelFile.sha256, hex.toString());
            Catalog.Variant variant = modelFile.variant;
            List<String> labels = Arrays.asList(new String(read(variant.labels), StandardCharsets.UTF_8).split("\n"));
            assertEquals(modelFile.key + ": labels", variant.numClasses, labels.size());
        }
    }
}
