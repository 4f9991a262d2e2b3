"""A pretend CUDA device on the CPU, to catch device mixing in CI without a GPU.

Inside `virtual_cuda()`, every tensor made for "cuda" (a factory with device="cuda",
`.to("cuda")`, `.cuda()`, a module moved there, torchvision's GPU JPEG decoder) is a
`CudaOnCpu`: it says `device == cuda:0` and holds its values in a real CPU tensor, so
the code under test runs for real, data-dependent steps (`.item()`, `.tolist()`,
`unique`, early stopping) included. Every operation checks its tensor arguments as
PyTorch does on a real GPU and raises `DeviceMismatch` when cuda and CPU tensors meet
(0-dim CPU tensors and CPU index tensors are allowed, as they are there; `copy_` and
`.to()` move between devices). `.numpy()` of a cuda tensor fails, as it does there.

Why not FakeTensorMode: it catches mixing too, but its tensors hold no values, so it
stops at the first `.item()`, `.tolist()` or `unique()`, i.e. before most of a
fine-tune or an index has run. Why not the meta device: the same, and it would not
tell a model's device from its input's.
"""

import contextlib
from unittest import mock

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode, return_and_correct_aliasing
from torch.utils._pytree import tree_flatten, tree_map

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")
STAND_IN = torch.device("meta")   # what PyTorch's C++ is told a CudaOnCpu lives on (see CudaOnCpu.device)
aten = torch.ops.aten

# Ops that take tensors on two devices by design (a copy between them), or CPU indices.
_CROSS_DEVICE = {aten.copy_.default, aten._to_copy.default, aten._pin_memory.default, aten.is_pinned.default}
_CPU_INDICES_OK = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default,
                   aten._index_put_impl_.default}
# Ops with one argument that lives on the CPU even for a GPU input: its position.
_HOST_ARGUMENT = {aten._pack_padded_sequence.default: 1, aten._pad_packed_sequence.default: 1, aten.gru.data: 1,
                  aten.lstm.data: 1}
_HOST_OUTPUT = {aten._pack_padded_sequence.default: 1}   # the batch sizes of a packed sequence


class DeviceMismatch(RuntimeError):
    """An op got tensors on the (virtual) cuda device and on the CPU."""


class CudaOnCpu(torch.Tensor):
    """A tensor that says it is on cuda:0 and keeps its values in `elem`, a CPU tensor."""

    elem: torch.Tensor

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        # An inference tensor only where the values are one: a view of a normal tensor taken in
        # inference mode is normal, and autograd sets its version counter afterwards.
        with torch.inference_mode(elem.is_inference()):
            wrapper = torch.Tensor._make_wrapper_subclass(
                cls, elem.size(), strides=elem.stride(), storage_offset=elem.storage_offset(), dtype=elem.dtype,
                layout=elem.layout, device=STAND_IN, requires_grad=elem.requires_grad)
        wrapper.elem = elem
        return wrapper

    # Python sees cuda:0; PyTorch's C++ sees the meta device (STAND_IN), so autograd and the
    # dispatcher never ask for a CUDA driver or stream, while C++ code that makes new tensors
    # "like" one of ours still makes them on a device other than the CPU.
    @property
    def device(self):
        return CUDA

    @property
    def is_cuda(self):
        return True

    @property
    def is_cpu(self):
        return False

    @property
    def is_meta(self):   # it holds values: load_state_dict must copy into it
        return False

    def get_device(self):
        return 0

    def __repr__(self):
        return f"CudaOnCpu({self.elem!r})"

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
                        "to host memory first.")


def _is_cuda_request(device) -> bool:
    return device is not None and torch.device(device).type in ("cuda", STAND_IN.type)


def _devices(func, args, kwargs) -> set[str]:
    """The devices of the tensors an op takes, counted the way a real GPU run checks them."""
    if func in _HOST_ARGUMENT:     # e.g. a packed sequence's lengths, which PyTorch wants on the CPU
        args = args[:_HOST_ARGUMENT[func]] + args[_HOST_ARGUMENT[func] + 1:]
    flat, _ = tree_flatten((args, kwargs))
    tensors = [t for t in flat if isinstance(t, torch.Tensor)]
    if func in _CPU_INDICES_OK and tensors:
        tensors = tensors[:1] + [t for t in tensors[1:] if isinstance(t, CudaOnCpu) or t.is_floating_point()]
    found = set()
    for t in tensors:
        if isinstance(t, CudaOnCpu):
            found.add("cuda")
        elif t.device.type == "cpu" and t.dim() > 0:   # a 0-dim CPU tensor is a scalar to CUDA kernels
            found.add("cpu")
    return found


def _unwrap(x):
    return x.elem if isinstance(x, CudaOnCpu) else x


def _wrap_outputs(out):
    return tree_map(lambda t: CudaOnCpu(t) if isinstance(t, torch.Tensor) and not isinstance(t, CudaOnCpu) else t,
                    out)


def _run(func, args, kwargs):
    """Run `func` on the CPU values; the result is on cuda when its inputs (or its device argument) are."""
    if func in (aten._pin_memory.default,):
        return _unwrap(args[0]).clone()
    if func is aten.is_pinned.default:
        return False
    target = kwargs.get("device")
    if target is not None:
        kwargs = {**kwargs, "device": CPU}
    kwargs.pop("pin_memory", None)
    devices = _devices(func, args, kwargs)
    if func not in _CROSS_DEVICE and len(devices) > 1:
        raise DeviceMismatch(f"Expected all tensors to be on the same device, but found at least two devices, "
                             f"cuda:0 and cpu! (in {func})")
    out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
    if func is aten.copy_.default:            # in place: the destination keeps its device
        return args[0]
    if func is aten._to_copy.default and target is None:
        on_cuda = isinstance(args[0], CudaOnCpu)
    else:
        on_cuda = _is_cuda_request(target) if target is not None else "cuda" in devices
    if not on_cuda:
        return out
    if func in _HOST_OUTPUT:
        out = tuple(t if i == _HOST_OUTPUT[func] else _wrap_outputs(t) for i, t in enumerate(out))
    else:
        out = _wrap_outputs(out)
    # In-place ops return their argument, views share its storage, and in-place views (transpose_)
    # change the wrapper's own sizes: what PyTorch's helper for wrapper tensors does.
    return return_and_correct_aliasing(func, args, kwargs, out)


class _FactoryMode(TorchDispatchMode):
    """Catches what has no tensor argument yet: torch.zeros(..., device="cuda") and the like."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if any(issubclass(t, CudaOnCpu) for t in types) or _is_cuda_request(kwargs.get("device")) or \
                func in (aten._pin_memory.default, aten.is_pinned.default):
            return _run(func, args, kwargs)
        return func(*args, **kwargs)


class _MoveMode(TorchFunctionMode):
    """`.to("cuda")`, `.cuda()` and `.pin_memory()` are caught before PyTorch's C++ asks for a driver."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.to:
            device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*args[1:], **kwargs)
            if _is_cuda_request(device):
                return _to_virtual_cuda(args[0], dtype, memory_format, kwargs.get("copy", False))
            if device is not None and device.type == "cpu" and isinstance(args[0], CudaOnCpu):
                return _to_host(args[0]).to(dtype=dtype or args[0].dtype,
                                            memory_format=memory_format or torch.preserve_format)
        if func is torch.Tensor.cpu and isinstance(args[0], CudaOnCpu):
            return _to_host(args[0])
        if func is torch.Tensor.cuda:
            return _to_virtual_cuda(args[0], None, torch.preserve_format, False)
        if func is torch.Tensor.pin_memory:
            return _unwrap(args[0]).clone()
        if func is torch.Tensor.is_pinned:
            return False
        if func is torch.Tensor.tolist and isinstance(args[0], CudaOnCpu):
            return args[0].elem.tolist()     # a copy to the host, allowed on a GPU
        return func(*args, **kwargs)


def _to_host(tensor: CudaOnCpu) -> torch.Tensor:
    """A copy on the host, as .cpu() of a GPU tensor is (the caller may change it freely)."""
    return tensor.elem.detach().clone()


def _to_virtual_cuda(tensor, dtype, memory_format, copy):
    """From the host, always a copy (as a real transfer is: the host buffer may be refilled after)."""
    from_host = not isinstance(tensor, CudaOnCpu)
    value = _unwrap(tensor).to(dtype=dtype or tensor.dtype, memory_format=memory_format or torch.preserve_format,
                               copy=copy or from_host)
    if isinstance(tensor, CudaOnCpu) and value is tensor.elem:
        return tensor        # already there: .to() is a no-op, as on a GPU
    return CudaOnCpu(value)


def _decode_jpeg_on_virtual_cuda(real_decode):
    """torchvision's decode_jpeg with device="cuda": decoded on the CPU, handed back on the virtual cuda."""
    def decode(input, mode=None, device="cpu", apply_exif_orientation=False):
        if not _is_cuda_request(device):
            return real_decode(input, mode=mode, device=device, apply_exif_orientation=apply_exif_orientation)
        many = isinstance(input, (list, tuple))
        images = real_decode([_unwrap(b).cpu() for b in (input if many else [input])], mode=mode, device="cpu",
                             apply_exif_orientation=apply_exif_orientation)
        images = [CudaOnCpu(image) for image in images]
        return images if many else images[0]
    return decode


def _swapping(real_apply):
    """Module.to() and the like swap each parameter in place (where a real GPU run sets .data), so that
    lists of parameters taken before the move (an optimizer's) hold the moved ones."""
    def apply(module, fn, recurse=True):
        before = torch.__future__.get_swap_module_params_on_conversion()
        torch.__future__.set_swap_module_params_on_conversion(True)
        try:
            return real_apply(module, fn, recurse)
        finally:
            torch.__future__.set_swap_module_params_on_conversion(before)
    return apply


@contextlib.contextmanager
def virtual_cuda():
    """Pretend a CUDA GPU is here (see the module's docstring); yields nothing."""
    import torchvision.io

    patches = [
        mock.patch("torch.cuda.is_bf16_supported", return_value=True),
        mock.patch("torch.cuda.synchronize", lambda *a, **k: None),
        mock.patch("torch.cuda._lazy_init", lambda: None),   # .to("cuda") asks for a driver first
        mock.patch("torchvision.io.decode_jpeg", _decode_jpeg_on_virtual_cuda(torchvision.io.decode_jpeg)),
    ]
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        stack.enter_context(mock.patch.object(torch.nn.Module, "_apply", _swapping(torch.nn.Module._apply)))
        stack.enter_context(_FactoryMode())
        stack.enter_context(_MoveMode())
        yield
