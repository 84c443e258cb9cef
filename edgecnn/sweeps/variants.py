"""One variant's work, export then validation with latency, and the two ways to run many of them: one
after another in this process, or as Ray tasks on a local or an existing cluster.

`run_variant` is the only per-variant code; both executors call it. A variant that fails for its own
reasons (a refused export, a broken parity limit) comes back as FAILED with its one line, and the others
go on. A worker process that dies mid-variant is Ray's to retry: its partial export folder is removed by
the next writer (`atomic_folder`), so the retry starts clean.

Timing must not share a machine with other work: `timing_slot` is an exclusive lock per machine (a file
under /tmp, so every Ray worker and node process on the machine contends for the same one), held while
latency is measured, and exports hold it shared (`export_slot`). So exports run side by side, while a
timing phase waits for the running exports and holds new ones back. Latencies are compared only within
a node.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import socket
import tempfile
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

from edgecnn.harness.latency import LatencyOptions, cpu_model
from edgecnn.schema.enums import WeightsKind
from edgecnn.schema.report import ValidationReport, parse_report
from edgecnn.util import console
from edgecnn.util.interrupts import deferred_interrupts

TIMING_LOCK = Path(tempfile.gettempdir()) / "edgecnn-timing.lock"
VALIDATION_REPORT = Path("validation") / "report.json"


class VariantStatus(Enum):
    DONE = "done"  # exported (if needed) and validated in this run
    KEPT = "kept"  # finished by an earlier run: its report is reused
    FAILED = "failed"  # stopped for its own reasons; `error` says why in one line


class Executor(Enum):
    SERIAL = "serial"
    RAY = "ray"


@dataclass(frozen=True)
class NodeInfo:
    """Where a variant ran and was timed."""

    hostname: str
    node_id: str  # Ray's node id, or "local" on the serial path
    cpu: str
    cores: int

    @classmethod
    def here(cls, node_id: str = "local") -> "NodeInfo":
        return cls(socket.gethostname(), node_id, cpu_model(), os.cpu_count() or 1)


@dataclass(frozen=True)
class VariantWork:
    """Everything one variant needs; plain values, so that it travels to a Ray worker."""

    model: str
    alpha: float
    resolution: int
    folder: Path
    formats: tuple[str, ...]
    weights: Optional[str] = None
    num_classes: Optional[int] = None
    calib_dir: Optional[Path] = None
    calib_count: int = 100
    labels_dir: Optional[Path] = None
    label_map: Optional[Path] = None
    latency: LatencyOptions = LatencyOptions(budget_s=1.0)
    # a model from elsewhere (`model` is MODULE:ATTR): its keyword arguments and normalisation
    model_args: Optional[dict[str, Any]] = None
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None

    @property
    def third_party(self) -> bool:
        from edgecnn.weights.user_model import is_entry

        return is_entry(self.model)

    @property
    def variant_id(self) -> str:
        """The export's id, without building anything."""
        from edgecnn.weights.user_model import default_name

        if self.third_party:
            return default_name(self.model.rpartition(":")[2], self.model_args or {}, self.resolution)
        return self.spec.id

    @property
    def spec(self):
        from edgecnn.zoo.spec import VariantSpec

        extra = {} if self.num_classes is None else {"num_classes": self.num_classes}
        return VariantSpec.create(self.model, alpha=self.alpha, resolution=self.resolution, **extra)

    def user_model(self):
        """A model from elsewhere, imported, built and checked as `export --model MODULE:ATTR` does."""
        from edgecnn.weights import user_model

        trained = None if self.weights is None else user_model.project_checkpoint(self.weights)
        return user_model.from_entry(
            self.model,
            self.model_args or {},
            resolution=self.resolution,
            mean=self.mean or user_model.IMAGENET_MEAN,
            std=self.std or user_model.IMAGENET_STD,
            labels=None if trained is None else trained.labels(trained.trained_as.num_classes),
            num_classes=self.num_classes,
            weights=self.weights,
        )


@dataclass
class VariantOutcome:
    variant: str
    status: VariantStatus
    executor: Executor
    node: NodeInfo  # where it ran (for a KEPT variant: where this run found it)
    report: Optional[ValidationReport] = None  # its validation, made in this run or read back (KEPT)
    error: Optional[str] = None
    export_s: Optional[float] = None  # wall time of the export, when this run made it
    timing: Optional[tuple[float, float]] = None  # (start, end) of the timing phase, epoch seconds
    exporting: Optional[tuple[float, float]] = None  # (start, end) of the export, epoch seconds


TIMING_NOTE = (
    "each variant timed alone on its machine (no other timing phase or export meanwhile); latencies "
    "and ratios compare only within a node"
)


@dataclass(kw_only=True)
class VariantRow:
    """What every table of variants records: the variant, its size in params and MACs, how and where it ran.
    A sweep's and the scorecard's rows add their figures to it."""

    variant: str
    model: str
    alpha: float
    resolution: int
    params: int
    macs: int
    status: VariantStatus
    executor: Executor
    node: NodeInfo
    export_s: Optional[float] = None  # None: exported by an earlier run
    error: Optional[str] = None  # FAILED only: why, in one line

    @property
    def failed(self) -> bool:
        return self.status is VariantStatus.FAILED


Row = TypeVar("Row", bound=VariantRow)


def base_row(row_type: type[Row], work: VariantWork, outcome: VariantOutcome, **facts: Any) -> Row:
    """A `row_type` row of `work`'s variant as `outcome` left it, with `facts` (the row type's own fields)."""
    import torch

    from edgecnn.zoo.profile import profile
    from edgecnn.zoo.registry import create_model

    if work.third_party:
        prof = profile(work.user_model().network, work.resolution)
    else:
        spec = work.spec
        with torch.device("meta"):
            prof = profile(create_model(spec.model, alpha=spec.alpha, num_classes=spec.num_classes), spec.resolution)
    return row_type(
        variant=work.variant_id,
        model=work.model,
        alpha=work.alpha,
        resolution=work.resolution,
        params=prof.params,
        macs=prof.macs,
        status=outcome.status,
        executor=outcome.executor,
        node=outcome.node,
        export_s=outcome.export_s,
        error=outcome.error if outcome.status is VariantStatus.FAILED else None,
        **facts,
    )


def finished_report(work: VariantWork) -> Optional[ValidationReport]:
    """The variant's validation report if an earlier run completed it for what `work` asks, else None."""
    path = work.folder / VALIDATION_REPORT
    if not path.is_file():
        return None
    try:
        report = parse_report(json.loads(path.read_text(encoding="utf-8")), str(path))
    except ValueError as err:  # not JSON, or not a report this edgecnn reads: validated again
        console.say(f"[sweep] {work.variant_id}: the earlier report is not read ({err}); validating again")
        return None
    labelled_ok = work.labels_dir is None or (
        report.labelled is not None and report.labelled.folder == str(work.labels_dir)
    )
    if report.variant != work.variant_id or report.latency is None or not labelled_ok:
        return None
    return report


@contextmanager
def _machine_lock(
    mode: int, window: Optional[list[tuple[float, float]]] = None, lock_path: Path = TIMING_LOCK
) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, mode)
        start = time.time()
        try:
            yield
        finally:
            if window is not None:
                window.append((start, time.time()))
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def timing_slot(window: list[tuple[float, float]], lock_path: Path = TIMING_LOCK) -> AbstractContextManager[None]:
    """This machine to itself for timing: no other timing phase and no export runs while it is held.
    The (start, end) of the hold is appended to `window`."""
    return _machine_lock(fcntl.LOCK_EX, window, lock_path)


def export_slot(window: list[tuple[float, float]], lock_path: Path = TIMING_LOCK) -> AbstractContextManager[None]:
    """Held while exporting: exports share the machine with each other, never with a timing phase."""
    return _machine_lock(fcntl.LOCK_SH, window, lock_path)


def run_variant(work: VariantWork, executor: Executor = Executor.SERIAL, node_id: str = "local") -> VariantOutcome:
    """Export `work`'s variant (unless its folder holds an export already) and validate it with latency."""
    from edgecnn.exporter.pipeline import ExportRequest, run_export
    from edgecnn.formats import parse_formats
    from edgecnn.harness.validate import run_validation
    from edgecnn.util.errors import EXPECTED_FAILURES

    node = NodeInfo.here(node_id)
    outcome = VariantOutcome(work.variant_id, VariantStatus.DONE, executor, node)
    try:
        if not (work.folder / "manifest.json").is_file():
            started = time.perf_counter()
            exported: list[tuple[float, float]] = []
            with export_slot(exported):
                user = work.user_model() if work.third_party else None
                run_export(
                    ExportRequest(
                        user.spec if user is not None else work.spec,
                        parse_formats(",".join(work.formats)),
                        # a model from elsewhere loads a weights file as it is built; a trained checkpoint
                        # of it also brings its dataset
                        weights=work.weights if user is None or user.weights.kind == WeightsKind.PROJECT else None,
                        calib_dir=work.calib_dir,
                        calib_count=work.calib_count,
                        out=work.folder,
                        force=True,
                        validate=False,
                        user_model=user,
                    )
                )
            outcome.export_s = time.perf_counter() - started
            outcome.exporting = exported[0]
        window: list[tuple[float, float]] = []
        report = run_validation(
            work.folder,
            labels_dir=work.labels_dir,
            label_map=work.label_map,
            latency=work.latency,
            timing_slot=lambda: timing_slot(window),
            replace=True,  # the sweep's own export folder
        )
        outcome.report = report
        outcome.timing = window[0] if window else None
    except EXPECTED_FAILURES as err:
        outcome.status, outcome.error = VariantStatus.FAILED, f"{type(err).__name__}: {err}"
    return outcome


def run_works(works: list[VariantWork], cluster: Optional[RayCluster], label: str, out: Path) -> list[VariantOutcome]:
    """Every variant's outcome, in the order of `works`: finished ones kept, the rest run serially or on
    `cluster` (after checking that every node sees `out`, where their folders go), with a progress bar over
    the variants."""
    if cluster is not None:
        cluster.check_shared(out)
    outcomes: dict[str, VariantOutcome] = {}
    todo = []
    here = NodeInfo.here()
    for work in works:
        report = finished_report(work)
        if report is not None:
            outcomes[work.variant_id] = VariantOutcome(
                work.variant_id, VariantStatus.KEPT, Executor.SERIAL, here, report
            )
        else:
            todo.append(work)
    if len(outcomes):
        console.say(f"[sweep] {len(outcomes)} of {len(works)} variants finished earlier, kept")
    with console.step(label, total=len(todo)) as advance:

        def done(outcome: VariantOutcome) -> None:
            outcomes[outcome.variant] = outcome
            where = (
                f" on {outcome.node.hostname} ({outcome.node.node_id[:8]})" if outcome.executor is Executor.RAY else ""
            )
            console.say(
                f"[sweep] {outcome.variant}: {outcome.status.value}{where}"
                + (f": {outcome.error}" if outcome.error else "")
            )
            advance()

        with deferred_interrupts():
            if cluster is None:
                run_serially(todo, done)
            else:
                cluster.run(todo, done)
    return [outcomes[work.variant_id] for work in works]


def run_serially(works: list[VariantWork], done: Callable[[VariantOutcome], None]) -> list[VariantOutcome]:
    outcomes = []
    for work in works:
        console.say(f"[sweep] {work.variant_id}: exporting and validating here")
        outcomes.append(run_variant(work))
        done(outcomes[-1])
    return outcomes


@dataclass
class RayCluster:
    """A connection to Ray: a local one sized to this machine (`address` None), or an existing cluster."""

    address: Optional[str] = None
    object_store_bytes: int = 2 << 30  # the variants' results are small; the rest of 24 GiB is for the work
    nodes: list[dict] = field(default_factory=list)

    def __enter__(self) -> "RayCluster":
        import logging

        from edgecnn.util.errors import UsageError

        try:
            import ray
        except ImportError:
            raise UsageError("--ray needs Ray: pip install -e '.[cluster]' (make setup installs it)") from None

        if self.address is not None:
            check_reachable(self.address)
        init = functools.partial(
            ray.init, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True
        )
        try:
            if self.address is None:
                init(num_cpus=os.cpu_count() or 1, object_store_memory=self.object_store_bytes)
            else:
                init(address=self.address)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise UsageError(
                f"cannot join the Ray cluster at {self.address or 'a new local Ray'}: "
                f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
            ) from None
        self.nodes = [n for n in ray.nodes() if n.get("Alive")]
        return self

    def __exit__(self, *exc) -> None:
        import ray

        ray.shutdown()

    def check_shared(self, out: Path) -> None:
        """Refuse an `out` that some node does not see: each node reads the driver's marker and writes its own."""
        import uuid

        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from edgecnn.util.errors import UsageError

        if len(self.nodes) < 2:
            return
        out.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        marker = out / f".edgecnn-shared-{token}"
        marker.write_text(token)
        try:
            probe = ray.remote(num_cpus=0)(_probe_shared)
            refs = {
                n["NodeID"]: probe.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                ).remote(str(marker), token)
                for n in self.nodes
            }
            unseen = [node for node, ref in refs.items() if not ray.get(ref)]
            written = {p.name for p in out.glob(f".edgecnn-shared-{token}-*")}
            unseen += [node for node in refs if f".edgecnn-shared-{token}-{node}" not in written and node not in unseen]
        finally:
            for path in out.glob(f".edgecnn-shared-{token}*"):
                path.unlink(missing_ok=True)
        if unseen:
            raise UsageError(
                f"--out {out} is not shared by every node of the cluster ({len(unseen)} of "
                f"{len(self.nodes)} do not see it); give a folder on a filesystem all nodes mount"
            )

    def run(self, works: list[VariantWork], done: Callable[[VariantOutcome], None]) -> list[VariantOutcome]:
        """Each variant as one Ray task; a task whose worker dies is retried (Ray's `max_retries`)."""
        import ray

        task = ray.remote(num_cpus=1, max_retries=3)(_variant_task)
        pending = {task.remote(work): work for work in works}
        outcomes = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            work = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except ray.exceptions.RayError as err:  # retries spent: the variant failed, the others go on
                outcome = VariantOutcome(
                    work.variant_id,
                    VariantStatus.FAILED,
                    Executor.RAY,
                    NodeInfo.here("unknown"),
                    error=f"Ray: {str(err).splitlines()[0]}",
                )
            outcomes.append(outcome)
            done(outcome)
        return outcomes


def _probe_shared(marker: str, token: str) -> bool:
    import ray

    path = Path(marker)
    try:
        seen = path.read_text() == token
        (path.parent / f"{path.name}-{ray.get_runtime_context().get_node_id()}").write_text(token)
    except OSError:
        return False
    return seen


def _variant_task(work: VariantWork) -> VariantOutcome:
    import ray

    context = ray.get_runtime_context()
    return run_variant(work, Executor.RAY, context.get_node_id())


def check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """An address that nothing answers at is one line at once, not Ray's minute of retries."""
    from edgecnn.util.errors import UsageError

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray takes HOST:PORT of a Ray head node (ray start --head), not {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise UsageError(f"no Ray cluster answers at {address}: {err.strerror or err}") from None
