"""`zoo.finetune`: resolve the base once, check the hyper-parameters, run the right front."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zoo import model_dir
from zoo.errors import InvalidInputError
from zoo.finetuning.events import Event
from zoo.finetuning.hyperparameters import HyperParameters
from zoo.finetuning.trainer import FineTuneResult, RunOptions
from zoo.hub.spec import ModelSpec
from zoo.refs import ModelRef, registry, resolve


def finetune(
    base: str | ModelSpec | ModelRef,
    data: str | Path,
    out: str | Path,
    *,
    val_data: str | Path | None = None,
    callbacks: Sequence[Any] | None = None,
    resume: bool = False,
    export: str | None = None,
    name: str | None = None,
    record: bool = True,
    on_event: Callable[[Event], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    runtime: str = "tf",
    extract_features: Callable[..., Any] | None = None,
    **hyperparameters: Any,
) -> FineTuneResult:
    """Fine-tune registered model `base` on `data`; write a Zoo model folder to `out`.

    Image bases take a folder of class subfolders (or a CSV of path,label); text bases a
    CSV/JSONL of text,label. `hyperparameters` are `zoo.finetuning.hyperparameters`'s
    fields (epochs=10, fine_tune_layers=0, learning_rate=1e-3, ...), each range-checked.
    `name` (default: the folder's name) is what `zoo predict NAME` and `zoo list --local`
    know it by, unless `record` is False; it may not be a registry model's name.
    `on_event` receives one dict per state change and epoch (zoo.finetuning.events says
    them in words); `should_stop` is polled between batches, and a True answer ends
    training cleanly after a checkpoint (InterruptedError; `resume=True` continues).
    `runtime` runs an image base's frozen forward pass in phase 1 (zoo.vision.runtimes:
    "tf", "openvino", "auto"; the features agree to 1e-4 or the runtime is refused).
    `extract_features` (images) computes phase 1's frozen features of a split in place of
    this process (zoo.finetuning.image.FeatureExtractor: e.g. sharded over a Ray cluster).
    """
    ref = (base if isinstance(base, ModelRef) else
           registry(base) if isinstance(base, ModelSpec) else resolve(base))
    if ref.is_folder:
        raise InvalidInputError(
            f"{base} is a fine-tuned model; fine-tune from its base {ref.spec.name} instead")
    spec = ref.spec
    hp = HyperParameters.from_kwargs(**hyperparameters)
    hp.check_task(spec.is_image, spec.name)
    folder = Path(out).expanduser()
    what = "--name" if name else "the model's name (from --out)"
    name = name or folder.resolve().name
    if record:  # before any work: a registry name cannot be taken by a local model
        model_dir.check_record_name(name, what)
    run = RunOptions(val_data=val_data, callbacks=tuple(callbacks or ()), resume=resume,
                     export=export, name=name, record=record, on_event=on_event,
                     should_stop=should_stop, runtime=runtime,
                     extract_features=extract_features)
    if spec.is_text:
        if export is not None:
            raise InvalidInputError(f"--export applies to image bases; {spec.name} is a text "
                                    "model: drop it")
        if extract_features is not None:
            raise InvalidInputError(f"extract_features applies to image bases; {spec.name} "
                                    "is a text model: drop it")
        from zoo.finetuning.text import finetune_texts

        return finetune_texts(spec, data, folder, hp, run)
    from zoo.finetuning.image import finetune_images

    return finetune_images(spec, data, folder, hp, run)


__all__ = ["FineTuneResult", "finetune"]
