"""The project's int8 rules, as a PT2E quantizer: shared by the TFLite and the ExecuTorch int8 exports."""

from __future__ import annotations

from types import ModuleType

import torch

from edgecnn.data.preprocess import Int8InputEncoding


def edge_quantizer(
    base: type,
    utils: ModuleType,
    encoding: Int8InputEncoding,
    network: "torch.nn.Module | None" = None,
    float_units: frozenset = frozenset(),
    module_prefix: str = "",
    int8_unary_ops: frozenset = frozenset(),
):
    """A PT2E quantizer (`base`, with its annotation helpers `utils`) with the project's rules, and
    optionally units left in float (`network`'s module paths, as the exported graph names them under
    `module_prefix`), and optionally operators of one input quantized on their own, int8 in and int8 out
    (`int8_unary_ops`: ExecuTorch's XNNPACK runs an int8 hard-swish as one table lookup).

    Both converters' quantizers (litert-torch's PT2EQuantizer and ExecuTorch's XNNPACKQuantizer) descend
    from the same PyTorch quantizer and share its annotation helpers, so one set of rules serves both.

    The graph input takes the fixed `encoding` grid: left to calibration, its range would be whatever the
    calibration photos happen to reach, and an app's brighter or darker pixels would clip.

    A conv followed by ReLU6 is quantized as one unit, its output observed after the clamp (as TFLite
    fuses them): litert-torch pairs convs with ReLU only, so a ReLU6 shared the conv's unclamped range
    and kept a few of the 256 levels for 0..6 (trained EfficientNet-Lite0: worst cosine 0.77 against
    PyTorch, top-1 agreement 38%, before this).
    """
    from torchao.quantization.pt2e.quantizer import (
        FixedQParamsQuantizationSpec,
        QuantizationAnnotation,
        SharedQuantizationSpec,
    )

    fixed = FixedQParamsQuantizationSpec(
        dtype=torch.int8,
        scale=encoding.scale,
        zero_point=encoding.zero_point,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_affine,
    )
    convs = {torch.ops.aten.conv2d.default, torch.ops.aten.convolution.default}
    clamps = {torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default}

    def annotate_conv_relu6(model: torch.fx.GraphModule, config) -> None:
        for clamp in model.graph.nodes:
            conv = clamp.args[0] if clamp.op == "call_function" and clamp.target in clamps else None
            if not isinstance(conv, torch.fx.Node) or conv.target not in convs or len(conv.users) != 1:
                continue
            if tuple(float(a) for a in clamp.args[1:3]) != (0.0, 6.0):
                continue
            partition = [clamp, conv, conv.args[1]]
            inputs = {conv.args[0]: utils.get_input_act_qspec(config), conv.args[1]: utils.get_weight_qspec(config)}
            bias = conv.args[2] if len(conv.args) > 2 else None
            if isinstance(bias, torch.fx.Node):
                inputs[bias] = utils.get_bias_qspec(config)
                partition.append(bias)
            if utils._is_annotated(partition):
                continue
            conv.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=inputs, _annotated=True)
            clamp.meta["quantization_annotation"] = QuantizationAnnotation(
                output_qspec=utils.get_output_act_qspec(config), _annotated=True
            )
            utils._mark_nodes_as_annotated(partition)

    def annotate_unary_ops(model: torch.fx.GraphModule, config) -> None:
        for node in model.graph.nodes:
            if node.op == "call_function" and node.target in int8_unary_ops and not utils._is_annotated([node]):
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={node.args[0]: utils.get_input_act_qspec(config)},
                    output_qspec=utils.get_output_act_qspec(config),
                    _annotated=True,
                )

    def share_scale_through_value_preserving_ops(model: torch.fx.GraphModule) -> None:
        # An op that only moves or selects values (eval-mode dropout, a copy, a max or average pool, a zero
        # padding) left
        # unannotated gives its input's producer a scale of its own, and a concat after it cannot share
        # one scale across its inputs: DenseNet-121's int8 conversion failed on exactly that ('same
        # scale constraint'), and GoogLeNet's concats needed 8 requantize ops. Such an op takes its
        # input's quantization instead.
        for node in model.graph.nodes:
            if (
                node.op != "call_function"
                or node.target not in passthrough
                or node.meta.get("quantization_annotation") is not None
            ):
                continue
            if node.target == torch.ops.aten.dropout.default and (len(node.args) < 3 or node.args[2]):
                continue  # a training-mode dropout changes values
            source = node.args[0]
            annotation = source.meta.get("quantization_annotation") if isinstance(source, torch.fx.Node) else None
            if annotation is None or annotation.output_qspec is None:
                continue
            shared = SharedQuantizationSpec(source)
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={source: shared}, output_qspec=shared, _annotated=True
            )

    passthrough = {
        torch.ops.aten.dropout.default,
        torch.ops.aten.clone.default,
        torch.ops.aten.alias.default,
        torch.ops.aten.max_pool2d.default,
        torch.ops.aten.avg_pool2d.default,
        torch.ops.aten.constant_pad_nd.default,
        torch.ops.aten.pad.default,
    }

    def leave_float_units_alone(model: torch.fx.GraphModule, config) -> None:
        # Marked as annotated with nothing to observe, every annotator passes these nodes by; their
        # neighbours still quantize what they read from and give to them. Where a float unit reads the
        # graph's input or gives its output, that edge is still quantized: the file keeps int8 I/O.
        from edgecnn.int8.float_units import leaf_blocks, module_path, unit_of

        blocks = leaf_blocks(network)
        inputs = graph_inputs(model)
        outputs = {a for n in model.graph.nodes if n.op == "output" for a in n.all_input_nodes}
        for node in model.graph.nodes:
            if node.op != "call_function" or unit_of(module_path(node, module_prefix), blocks) not in float_units:
                continue
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={edge: fixed for edge in node.all_input_nodes if edge in inputs},
                output_qspec=utils.get_output_act_qspec(config) if node in outputs else None,
                _annotated=True,
            )

    def graph_inputs(model: torch.fx.GraphModule) -> set:
        inputs = {n for n in model.graph.nodes if n.op == "placeholder"}
        for node in model.graph.nodes:  # the NHWC->NCHW permute in front is the same values
            if node.target == torch.ops.aten.permute.default and node.args[0] in inputs:
                inputs.add(node)
        return inputs

    def _pad_value(node: torch.fx.Node) -> float:
        return float(node.args[2]) if len(node.args) > 2 else float(node.kwargs.get("value", 0.0))

    class EdgeQuantizer(base):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            if float_units:
                leave_float_units_alone(model, self.global_config)
            annotate_conv_relu6(model, self.global_config)  # first, so the plain conv rule leaves these
            annotate_unary_ops(model, self.global_config)
            model = super().annotate(model)
            share_scale_through_value_preserving_ops(model)
            inputs = graph_inputs(model)
            for node in model.graph.nodes:
                # a zero padding of the image itself ('same' padding written as F.pad before the first conv)
                # keeps the input's grid: it is annotated with the fixed encoding on both sides, and what
                # reads it reads the input grid
                if node.op == "call_function" and node.target in passthrough and node.args[0] in inputs:
                    if node.target == torch.ops.aten.constant_pad_nd.default and _pad_value(node) != 0:
                        continue
                    node.meta["quantization_annotation"] = QuantizationAnnotation(
                        input_qspec_map={node.args[0]: fixed}, output_qspec=fixed, _annotated=True
                    )
                    inputs.add(node)
            for node in model.graph.nodes:
                annotation = node.meta.get("quantization_annotation")
                for edge in list(annotation.input_qspec_map) if annotation is not None else []:
                    if edge in inputs:
                        annotation.input_qspec_map[edge] = fixed
            return model

    return EdgeQuantizer()
