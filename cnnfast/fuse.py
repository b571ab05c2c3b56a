"""The fusion pass of ``cnnfast.convert(model, fuse=True)``.

It finds, in the model's structure, convolutions followed by
  - an eval-mode ``BatchNorm2d``: folded into the convolution's weight and bias
    (w' = w * g / sqrt(v + eps), b' = (b - m) * g / sqrt(v + eps) + beta, computed in float64);
  - a ``ReLU`` (after the convolution, or after the folded BatchNorm): the convolution becomes a
    :class:`cnnfast.nn.Conv2dReLU` (conv2d + bias + ReLU in one pass of the fused kernel);
  - that ReLU module followed by a ``MaxPool2d`` module (without ``return_indices``): the convolution
    becomes a :class:`cnnfast.nn.Conv2dReLUMaxPool2d` (conv2d_relu_max_pool2d, one op whose
    convolution output is never kept).
  - an addition of another tensor (a residual block's identity or downsample branch), then a ReLU
    (conv (+ folded BatchNorm) -> add -> ReLU): the convolution becomes a
    :class:`cnnfast.nn.Conv2dAddReLU` (conv2d_add_relu: the residual added and the ReLU applied where
    the convolution writes its output). The module whose ``forward`` makes the addition (torchvision's
    ``BasicBlock`` and ``Bottleneck``, the CIFAR ResNet's block) is replaced by a ``torch.fx.GraphModule``
    of its trace, with the same class name and submodules, whose graph calls the fused layer with the
    residual; the pattern must be exact: the convolution's (or BatchNorm's) output used only by the
    addition, the addition's only user the ReLU, no ``alpha`` and, for an in-place ``add_`` on the
    other operand, that operand used nowhere else.
The structure is read from a ``torch.fx`` trace of the model (so residual blocks written with
modules in ``forward`` are seen, as torchvision's ResNet); a module that does not trace (e.g. an
input check with control flow) is read one level down instead: its children are traced, and an
``nn.Sequential`` is read as its chain of children. The model's own classes and ``forward`` are kept: the pass edits
the module tree only — the fused convolution takes the convolution's place, and a BatchNorm or ReLU
module that has been absorbed becomes ``nn.Identity``. A module used in more than one place is
never replaced (a shared ReLU stays and just sees a tensor that is already >= 0: ReLU is idempotent,
so the result is the same), and a convolution whose output is used by anything else is not fused.

Modes: Conv->ReLU(->MaxPool) fusion is exact in training and in eval (same parameters, same gradients). A
BatchNorm is folded only when it is in eval mode (running statistics); in training mode it stays as it
is (batch statistics cannot be folded) and so does the ReLU after it. A folded model is for
inference: calling ``.train()`` on it later does not bring the BatchNorm back.
"""
import operator

import torch

from . import nn as cnn

_CONVS = (torch.nn.Conv2d, cnn.Conv2d)
_RELUS = (torch.nn.ReLU, cnn.ReLU)
_RELU_FUNCTIONS = (torch.relu, torch.nn.functional.relu, torch.relu_)
_POOLS = (torch.nn.MaxPool2d, cnn.MaxPool2d)
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_ADD_METHODS = ("add", "add_")


class _Tracer(torch.fx.Tracer):
    """torch's tracer, with cnnfast's layers (subclasses of torch.nn's) kept as leaves too."""

    def is_leaf_module(self, m, qualname):
        return type(m) in (cnn.Conv2d, cnn.Conv2dReLU, cnn.Conv2dAddReLU, cnn.Conv2dReLUMaxPool2d, cnn.MaxPool2d,
                           cnn.ReLU) \
            or super().is_leaf_module(m, qualname)


def _foldable_bn(bn, conv):
    return (type(bn) is torch.nn.BatchNorm2d and not bn.training and bn.track_running_stats
            and bn.running_mean is not None and bn.running_var is not None
            and bn.num_features == conv.out_channels)


def _fusable_pool(pool):
    return type(pool) in _POOLS and not pool.return_indices


def _fused_conv(conv, bn, relu, pool=None, cls=None):
    """A new conv module for conv (+ folded bn) (+ relu (+ pool)); conv itself is not modified."""
    if cls is None:
        cls = (cnn.Conv2dReLUMaxPool2d if pool is not None else cnn.Conv2dReLU) if relu else type(conv)
    fused = cls.__new__(cls)
    fused.__dict__ = conv.__dict__.copy()
    for attr in ("_parameters", "_buffers", "_modules"):
        setattr(fused, attr, getattr(conv, attr).copy())
    if bn is not None:
        with torch.no_grad():
            w = conv.weight.detach().double()
            b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64, device=w.device)
            scale = (bn.weight.detach().double() if bn.affine else torch.ones_like(b)) / torch.sqrt(bn.running_var.double() + bn.eps)
            shift = bn.bias.detach().double() if bn.affine else torch.zeros_like(b)
            new_w = (w * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype)
            new_b = ((b - bn.running_mean.double()) * scale + shift).to(conv.weight.dtype)
        fused._parameters["weight"] = torch.nn.Parameter(new_w, requires_grad=conv.weight.requires_grad)
        fused._parameters["bias"] = torch.nn.Parameter(new_b, requires_grad=conv.weight.requires_grad)
    if pool is not None:
        fused.set_pool(pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
    return fused


def _set_module(root, path, module):
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    parent._modules[name] = module


def _registrations(model):
    """id(module) -> how many places of the module tree hold it."""
    uses = {}
    for _, m in model.named_modules(remove_duplicate=False):
        uses[id(m)] = uses.get(id(m), 0) + 1
    return uses


def _chains_from_fx(model, prefix="", uses=None):
    """(conv path, bn path or None, relu path or None, relu removable, pool path or None) for each chain
    in the traced graph of ``model``, paths prefixed with ``prefix``; raises when ``model`` does not trace.
    A pool is taken only after a removable ReLU module, and only as its one user called once."""
    uses = uses if uses is not None else _registrations(model)
    graph = _Tracer().trace(model)
    modules = dict(model.named_modules(remove_duplicate=False))
    calls = {}
    for node in graph.nodes:
        if node.op == "call_module":
            # A module also held elsewhere in the tree counts as called more than once.
            calls[node.target] = calls.get(node.target, 0) + uses.get(id(modules.get(node.target)), 1)

    def module_of(node):
        return modules.get(node.target) if node.op == "call_module" else None

    def only_user(node):
        users = list(node.users)
        return users[0] if len(users) == 1 else None

    def is_relu(node):
        if node.op == "call_module":
            return type(module_of(node)) in _RELUS
        if node.op == "call_function":
            return node.target in _RELU_FUNCTIONS and len(node.args) == 1
        return node.op == "call_method" and node.target in ("relu", "relu_") and len(node.args) == 1

    chains = []
    for node in graph.nodes:
        conv = module_of(node)
        if type(conv) not in _CONVS or calls[node.target] != 1:
            continue
        bn_path, tail = None, node
        user = only_user(node)
        if user is not None and user.op == "call_module" and user.args[0] is node and calls[user.target] == 1 \
                and _foldable_bn(module_of(user), conv):
            bn_path, tail = user.target, user
        relu = only_user(tail)
        relu_path, removable = None, False
        if relu is not None and is_relu(relu) and relu.args[0] is tail:
            if relu.op == "call_module":
                relu_path = relu.target
                removable = calls[relu.target] == 1
            else:
                relu_path = ""  # a functional relu: stays in forward, idempotent after the fused op
        pool_path = None
        if removable:
            pool = only_user(relu)
            if pool is not None and pool.op == "call_module" and pool.args[0] is relu and len(pool.args) == 1 \
                    and not pool.kwargs and calls[pool.target] == 1 and _fusable_pool(module_of(pool)):
                pool_path = pool.target
        if bn_path is not None or relu_path is not None:
            add = (lambda t: prefix + t) if prefix else (lambda t: t)
            chains.append((add(node.target), add(bn_path) if bn_path else None,
                           add(relu_path) if relu_path else relu_path, removable,
                           add(pool_path) if pool_path else None))
    return chains


def _is_relu(node, modules):
    """A ReLU of one tensor: an nn.ReLU module (in place or not), torch.relu / relu_, F.relu without
    other arguments, or the Tensor methods relu / relu_."""
    if node.op == "call_module":
        return type(modules.get(node.target)) in _RELUS and len(node.args) == 1 and not node.kwargs
    if node.op == "call_function":
        # (F.relu traces with its inplace keyword; in place or not is the same on a sum with no other user.)
        return node.target in _RELU_FUNCTIONS and len(node.args) == 1 and set(node.kwargs) <= {"inplace"}
    return node.op == "call_method" and node.target in ("relu", "relu_") and len(node.args) == 1 and not node.kwargs


def _residual_matches(graph, modules, calls, own_only):
    """(conv node, bn node or None, add node, relu node, residual node) for each exact
    conv (+ foldable BN) -> add -> ReLU of ``graph``. With ``own_only``, only additions made by the
    traced module's own forward (not inside a submodule's)."""
    def only_user(node):
        users = list(node.users)
        return users[0] if len(users) == 1 else None

    def conv_chain(tail):
        """(conv, bn) when ``tail`` is a convolution called once, or a foldable BN of one."""
        if tail.op != "call_module" or calls.get(tail.target) != 1:
            return None
        m = modules.get(tail.target)
        if type(m) in _CONVS:
            return (tail, None) if len(tail.args) == 1 and not tail.kwargs else None
        if type(m) is torch.nn.BatchNorm2d and len(tail.args) == 1 and not tail.kwargs:
            conv = tail.args[0]
            if isinstance(conv, torch.fx.Node) and conv.op == "call_module" and calls.get(conv.target) == 1 \
                    and type(modules.get(conv.target)) in _CONVS and len(conv.args) == 1 and not conv.kwargs \
                    and only_user(conv) is tail and _foldable_bn(m, modules[conv.target]):
                return conv, tail
        return None

    matches = []
    for add in graph.nodes:
        is_add = (add.op == "call_function" and add.target in _ADD_FUNCTIONS) or \
            (add.op == "call_method" and add.target in _ADD_METHODS)
        if not is_add or len(add.args) != 2 or add.kwargs:
            continue
        if own_only and add.meta.get("nn_module_stack"):
            continue
        in_place = add.target in (operator.iadd, "add_")
        for tail, other in (add.args, add.args[::-1]):
            if not isinstance(tail, torch.fx.Node) or not isinstance(other, torch.fx.Node) or tail is other:
                continue
            chain = conv_chain(tail)
            if chain is None or only_user(tail) is not add:
                continue
            # An in-place add into the residual changes it for its other users: not the fused op's result.
            if in_place and add.args[0] is other and len(other.users) != 1:
                continue
            relu = only_user(add)
            if relu is None or not _is_relu(relu, modules) or relu.args[0] is not add:
                continue
            matches.append((chain[0], chain[1], add, relu, other))
            break
    return matches


def _residual_owners(model, uses):
    """Paths of the modules whose own forward makes a fusable residual addition, from ``model``'s
    trace (the innermost module on the addition's module stack); raises when ``model`` does not trace."""
    graph = _Tracer().trace(model)
    modules = dict(model.named_modules(remove_duplicate=False))
    calls = _call_counts(graph, modules, uses)
    owners = []
    for _, _, add, _, _ in _residual_matches(graph, modules, calls, own_only=False):
        stack = list(add.meta.get("nn_module_stack", {}).values())
        path = stack[-1][0] if stack else ""
        if path not in owners:
            owners.append(path)
    return owners


def _call_counts(graph, modules, uses):
    """target -> how many times the graph calls it, a module held in several places counting as each."""
    calls = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + uses.get(id(modules.get(node.target)), 1)
    return calls


def _fuse_residuals_of(owner, uses, can_serve):
    """``owner`` with its own conv (+ BN) -> add -> ReLU chains fused: a GraphModule of its trace
    (same class name, same submodules, training mode kept), or ``owner`` itself when there is none;
    returns (module, number fused)."""
    graph = _Tracer().trace(owner)
    modules = dict(owner.named_modules(remove_duplicate=False))
    calls = _call_counts(graph, modules, uses)
    fused_count = 0
    for conv, bn, add, relu, other in _residual_matches(graph, modules, calls, own_only=True):
        conv_module = modules[conv.target]
        if not can_serve(conv_module):
            continue
        fused = _fused_conv(conv_module, modules[bn.target] if bn is not None else None, True,
                            cls=cnn.Conv2dAddReLU)
        _set_module(owner, conv.target, fused)
        if bn is not None:
            _set_module(owner, bn.target, torch.nn.Identity())
        if relu.op == "call_module" and calls[relu.target] == 1:
            _set_module(owner, relu.target, torch.nn.Identity())
        with graph.inserting_before(relu):
            call = graph.call_module(conv.target, (conv.args[0], other))
        relu.replace_all_uses_with(call)
        for node in (relu, add, bn, conv):
            if node is not None:
                graph.erase_node(node)
        fused_count += 1
    if not fused_count:
        return owner, 0
    graph.lint()
    module = torch.fx.GraphModule(owner, graph, class_name=type(owner).__name__)
    # The owner's own submodules, parameters and buffers, all of them (GraphModule would copy only those
    # the graph reaches, with plain Modules in place of their containers): state_dict keys, containers
    # (a downsample Sequential) and absorbed modules (now nn.Identity) stay as they were.
    for attr in ("_modules", "_parameters", "_buffers"):
        setattr(module, attr, getattr(owner, attr).copy())
    module.train(owner.training)
    return module, fused_count


def _fuse_residuals(model, can_serve):
    """Every exact conv (+ BN) -> add -> ReLU of ``model`` fused; returns (model, number fused)."""
    uses = _registrations(model)
    try:
        owners = _residual_owners(model, uses)
    except Exception:  # does not trace as a whole: the blocks are not looked for one by one
        return model, 0
    total = 0
    for path in owners:
        owner = model.get_submodule(path) if path else model
        if uses.get(id(owner), 1) != 1:
            continue  # a module held in two places: replacing it in one would split it
        try:
            new, count = _fuse_residuals_of(owner, uses, can_serve)
        except Exception:  # the block alone does not trace (e.g. it reads a parent's state)
            continue
        if count:
            if path:
                _set_module(model, path, new)
            else:
                model = new
            total += count
    return model, total


def _chains(module, path, uses):
    """Chains of ``module`` (at ``path`` in the model): from its fx trace when it traces, else from its
    own Sequential chain (when it is one) and, recursively, from its children."""
    prefix = f"{path}." if path else ""
    if not isinstance(module, torch.nn.Sequential):
        try:
            return _chains_from_fx(module, prefix, uses)
        except Exception:  # control flow on tensors, unsupported Python: look one level down
            pass
    chains = _sequential_chains(module, prefix, uses) if isinstance(module, torch.nn.Sequential) else []
    done = {c[0] for c in chains}
    for name, child in module._modules.items():
        if child is not None and prefix + name not in done:
            chains += _chains(child, prefix + name, uses)
    return chains


def _sequential_chains(seq, prefix, uses):
    """Chains read from consecutive children of the nn.Sequential ``seq``."""
    chains = []
    names = list(seq._modules)
    module = lambda k: seq._modules[names[k]]  # noqa: E731
    i = 0
    while i < len(names):
        conv = module(i)
        if type(conv) in _CONVS and uses[id(conv)] == 1:
            j, bn_path, relu_path, removable, pool_path = i + 1, None, None, False, None
            if j < len(names) and _foldable_bn(module(j), conv) and uses[id(module(j))] == 1:
                bn_path, j = prefix + names[j], j + 1
            if j < len(names) and type(module(j)) in _RELUS:
                relu_path, removable = prefix + names[j], uses[id(module(j))] == 1
                j += 1
                if removable and j < len(names) and _fusable_pool(module(j)) and uses[id(module(j))] == 1:
                    pool_path, j = prefix + names[j], j + 1
            if bn_path is not None or relu_path is not None:
                chains.append((prefix + names[i], bn_path, relu_path, removable, pool_path))
                i = j
                continue
        i += 1
    return chains


def fuse(model, can_serve=lambda module: True):
    """Fuse ``model``'s module tree in place (see the module docstring); returns (model, number of
    convolutions fused). ``can_serve(conv)`` says whether cnnfast has a kernel for that convolution's
    dtype and device (a convolution it cannot serve is left alone)."""
    model, fused_count = _fuse_residuals(model, can_serve)
    chains = _chains(model, "", _registrations(model))
    for conv_path, bn_path, relu_path, removable, pool_path in chains:
        conv = model.get_submodule(conv_path)
        if not can_serve(conv):
            continue
        bn = model.get_submodule(bn_path) if bn_path else None
        pool = model.get_submodule(pool_path) if pool_path else None
        fused = _fused_conv(conv, bn, relu_path is not None, pool)
        if conv_path == "":
            model = fused
        else:
            _set_module(model, conv_path, fused)
        if bn_path:
            _set_module(model, bn_path, torch.nn.Identity())
        if relu_path and removable:
            _set_module(model, relu_path, torch.nn.Identity())
        if pool_path:
            _set_module(model, pool_path, torch.nn.Identity())
        fused_count += 1
    return model, fused_count
