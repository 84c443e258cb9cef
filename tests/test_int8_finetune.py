"""Int8-aware fine-tuning: the trainable graph is the int8 graph, training brings it closer to PyTorch, and the
converter writes the trained weights into the int8 file (an earlier attempt through PT2E's QAT flow did not:
its weight observers' moving averages were not the trained weights' ranges, and the file got worse)."""
import copy
import dataclasses

import numpy as np
import pytest
import torch

from edgecnn.data.calibration import TuningSet, load_repair_set
from edgecnn.data.datasets import get_dataset
from edgecnn.int8 import finetune
from edgecnn.formats import tflite
from edgecnn.util.metrics import logits_sqnr_db

from trained_int8 import trained_int8

WEIGHTS = "fashion-mnist-mobilenet-v3-small"  # its pure int8 agrees with PyTorch on about 97%: room to gain


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    trained = trained_int8(WEIGHTS, tmp_path_factory.mktemp("finetune"))
    recipe = trained.recipe
    tuning = TuningSet(recipe.dataset, recipe.resolution, tuple(trained.calibration.dataset.indices), count=1500)
    train, _ = tuning.load()
    test, _ = get_dataset(recipe.dataset).model_inputs("test", recipe.resolution, indices=range(500), progress=False)
    return trained.job, trained.encoding, trained.calibration, tuning, train, test, trained.pytorch


def test_tuning_images_are_neither_calibration_nor_repair_images(case):
    _, _, calibration, tuning, train, _, _ = case
    repair, _, _ = load_repair_set(tuning.dataset, tuning.resolution, calibration.dataset.indices, count=5000)
    seen = {image.tobytes() for image in np.concatenate([calibration.images, repair])}
    assert len(train) == 1500 and not any(image.tobytes() in seen for image in train)


def test_fine_tuning_brings_the_int8_file_closer_to_pytorch(case):
    job, encoding, _, _, train, test, pytorch = case
    searchable = tflite.quantize(job, any_batch=True)
    inputs = torch.from_numpy(encoding.decode(encoding.encode(train)))
    held_out = torch.from_numpy(encoding.decode(encoding.encode(test)))
    trainable = finetune.trainable_copy(searchable.graph)
    before = finetune.logits(searchable.graph, held_out)
    # before training, the fake-quantized copy is the int8 graph, bit for bit
    assert np.array_equal(finetune.logits(trainable.graph, held_out), before)

    losses = finetune.fine_tune(trainable, inputs, pytorch(train), epochs=1, learning_rate=3e-5)
    reference = pytorch(test).numpy()
    simulated = finetune.logits(trainable.graph, held_out)
    assert logits_sqnr_db(simulated, reference) > logits_sqnr_db(before, reference) + 0.5, losses

    # written back into the batch-1 graph the file is converted from: that graph computes what was trained,
    # and LiteRT's int8 file follows it, not the weights it had before
    plain = tflite.quantize(job)
    tuned = dataclasses.replace(plain, graph=copy.deepcopy(plain.graph))
    finetune.write_back(trainable, tuned.graph)
    with torch.no_grad():
        one = tuned.graph(held_out[:1]).numpy()
    assert np.allclose(one, simulated[:1], atol=1e-5)
    files = {}
    for name, graph in (("plain", plain), ("tuned", tuned)):
        tflite._convert(graph, job.work_dir / f"{name}.tflite")
        files[name] = tflite.litert_logits(job.work_dir / f"{name}.tflite", test, encoding)
    assert logits_sqnr_db(files["tuned"], simulated) > logits_sqnr_db(files["plain"], simulated) + 3.0
    assert logits_sqnr_db(files["tuned"], reference) > logits_sqnr_db(files["plain"], reference) + 0.5


@pytest.mark.slow  # `make test-full`: repeats coverage `make test` has (kept within its 20 minutes)
def test_write_back_refuses_a_graph_of_another_network(case):
    job, _, _, _, _, _, _ = case
    trainable = finetune.trainable_copy(tflite.quantize(job, any_batch=True).graph)
    foreign = trained_int8("fashion-mnist-demo", job.work_dir).job
    with pytest.raises(ValueError, match="not a graph of the trained network"):
        finetune.write_back(trainable, tflite.quantize(foreign).graph)


@pytest.mark.slow  # `make test-full`: the engine that runs it is the TFLite's, tested above in `make test`
def test_the_int8_pte_is_fine_tuned_the_same_way_and_its_program_follows_the_trained_weights(case):
    from edgecnn.formats import executorch

    job, _, _, _, train, test, pytorch = case
    writer = executorch.Int8ProgramWriter(job)
    searchable = writer.quantize(job.backbone, any_batch=True)
    trainable = finetune.trainable_copy(searchable.graph)  # XNNPACK's weight scales are the ones training keeps
    finetune.fine_tune(trainable, searchable.inputs(train), pytorch(train), epochs=1, learning_rate=3e-5)
    simulated = finetune.logits(trainable.graph, searchable.inputs(test))
    plain = writer.quantize(job.backbone)
    tuned = dataclasses.replace(plain, graph=copy.deepcopy(plain.graph))
    finetune.write_back(trainable, tuned.graph)
    runs = {name: writer.logits(writer.write(graph, f"{name}.pte"), test) for name, graph in
            (("plain", plain), ("tuned", tuned))}
    reference = pytorch(test).numpy()
    assert logits_sqnr_db(runs["tuned"], simulated) > logits_sqnr_db(runs["plain"], simulated) + 3.0
    assert logits_sqnr_db(runs["tuned"], reference) > logits_sqnr_db(runs["plain"], reference) + 0.5
