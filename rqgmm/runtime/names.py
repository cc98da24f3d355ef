"""Names the parser offers, and the words of a missing device that the torch-free early check
(:mod:`rqgmm.runtime.torch_build`) and :mod:`rqgmm.runtime.device` share; importable without torch."""

#: Matrix-product precisions on a GPU (:mod:`rqgmm.runtime.device`). On a CPU every one computes in fp32.
PRECISIONS = ("fp32", "tf32", "bf16")


def no_cuda_message(what: str, device: str) -> str:
    """The one wording of "this machine has no CUDA device" (the early check and :mod:`rqgmm.runtime.device`)."""
    fix = "use --device cpu" if what.startswith("--") else "use the CPU"
    return f"{what} {device}: this machine has no CUDA device (or torch was built without CUDA); {fix}"


def no_device_message(what: str, spec: str, cuda: bool) -> str:
    """The one wording of "no such device" for a device type the machine lacks (``cuda``: whether to offer it)."""
    return f"{what} {spec!r}: this machine has no such device; use cpu" + (" or cuda" if cuda else "")
