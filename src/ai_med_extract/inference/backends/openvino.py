"""Causal language models on OpenVINO through optimum-intel (``OVModelForCausalLM``).

A folder holding an OpenVINO IR (``openvino_model.xml``) loads directly; a Transformers folder is
exported to IR once, into the model cache, and reused afterwards. Runs on the CPU, or on an Intel
GPU when the entry asks for ``device: GPU`` (or the profile has a GPU and OpenVINO sees one).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, ClassVar

from ai_med_extract.inference.backends.transformers import TransformersBackend
from ai_med_extract.inference.catalogue import ModelType
from ai_med_extract.inference.errors import ModelLoadFailed

logger = logging.getLogger(__name__)

IR_FILE = "openvino_model.xml"


class OpenVINOBackend(TransformersBackend):
    kind = ModelType.openvino
    requires: ClassVar[tuple[str, ...]] = ("openvino", "optimum.intel", "transformers")

    def _ov_device(self) -> str:
        if self.entry.device:
            return self.entry.device.upper()
        import openvino

        gpus = [d for d in openvino.Core().available_devices if d.startswith("GPU")]
        return "GPU" if gpus and self.ctx.profile.device != "cpu" else "CPU"

    def export_dir(self, source: Path) -> Path:
        digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.entry.name)
        return self.ctx.cache_dir / "openvino" / f"{safe}-{digest}"

    def _load_model(self, path: str) -> Any:
        from optimum.intel import OVModelForCausalLM

        source = Path(path)
        device = self._ov_device()
        ov_config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(self.ctx.profile.n_threads)}
        try:
            if (source / IR_FILE).exists():
                model = OVModelForCausalLM.from_pretrained(
                    source, device=device, ov_config=ov_config, local_files_only=True, **self.entry.options
                )
            else:
                target = self.export_dir(source)
                if not (target / IR_FILE).exists():
                    logger.info("exporting model to OpenVINO IR", extra={"model": self.entry.name})
                    exported = OVModelForCausalLM.from_pretrained(
                        source, export=True, compile=False, local_files_only=True, **self.entry.options
                    )
                    exported.save_pretrained(target)
                    self.tokenizer.save_pretrained(target)
                    del exported
                model = OVModelForCausalLM.from_pretrained(
                    target, device=device, ov_config=ov_config, local_files_only=True
                )
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadFailed(
                f"model {self.entry.name!r}: OpenVINO could not load or export it ({type(exc).__name__})",
                details={"model": self.entry.name},
            ) from exc
        self.device = device
        self._torch_device = "cpu"  # type: ignore[assignment]  # inputs are torch tensors on the host; OpenVINO moves them
        return model

    def memory_bytes(self) -> int | None:
        return None  # compiled OpenVINO models are measured by the pool (resident memory)

    def info(self) -> dict[str, object]:
        return {"device": self.device, "architecture": "OVModelForCausalLM"}
