"""Run one decoded call: look the function up, check the arguments, call it, coerce the result.

Everything that can go wrong becomes an `ErrorReply` with a message that says what happened and what to do;
nothing here raises to the server loop.
"""

from __future__ import annotations

import datetime
import inspect
import sys
import time
import traceback
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .convert import ConversionError, convert, plan
from .interrupts import CallCancelled, StopReason, current_call
from .namespaces import FunctionNotFound, Namespace
from .coerce import CoercionError, coerce, python_type_name
from .wire import Call, ErrorKind, ErrorReply, TypeDesc, csharp_name, forget_prefix


@dataclass
class Outcome:
    """What one call did: the server encodes it, observers (the call history) record it."""

    name: str
    returns: TypeDesc
    args: list
    started: float
    duration: float = 0.0
    result: Any = None          # what the function returned
    value: Any = None           # the result coerced to the declared C# type
    error: Optional[ErrorReply] = None
    awaitable: Any = None       # an `async def` result the executor's event loop must await, then `complete`
    stream: Any = None          # the iterator a stream call opened (IEnumerable<T> in C#)
    control: Any = None         # the RunningCall of a call whose `awaitable` is still to be awaited
    end: bool = False           # the stream has no more items
    exit_status: Optional[int] = None   # the function raised SystemExit: the status a process would exit with


_signatures: "weakref.WeakKeyDictionary[Any, Optional[inspect.Signature]]" = weakref.WeakKeyDictionary()
_plans: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
_SIMPLE_HINTS = {int: (int, np.integer), float: (float, int, np.floating), str: (str,), bytes: (bytes,),
                 bool: (bool,), np.ndarray: (np.ndarray,), tuple: (tuple,), dict: (dict,),
                 datetime.datetime: (datetime.datetime,), datetime.timedelta: (datetime.timedelta,),
                 uuid.UUID: (uuid.UUID,)}


def _signature(fn: Any) -> Optional[inspect.Signature]:
    try:
        return _signatures[fn]
    except (KeyError, TypeError):
        pass
    try:
        sig: Optional[inspect.Signature] = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    try:
        _signatures[fn] = sig
    except TypeError:
        pass
    return sig


def _conversions(fn: Any, sig: inspect.Signature) -> Any:
    """Which positional arguments need converting to a record or enum type their hint names (cached per function)."""
    try:
        return _plans[fn]
    except (KeyError, TypeError):
        pass
    P = inspect.Parameter
    names = tuple(p.name for p in sig.parameters.values() if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD))
    try:
        found = plan(fn, names)
    except Exception:  # hints that cannot even be inspected: nothing to convert
        found = None
    try:
        _plans[fn] = found
    except TypeError:
        pass
    return found


_fast_plans: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def _fast_plan(fn: Any) -> Any:
    """(fewest, most (-1: any) positional arguments, [(index, accepted types, hint is int)]) for a function
    whose arguments need no conversion, or None: then check_arguments takes the full path every time."""
    try:
        return _fast_plans[fn]
    except (KeyError, TypeError):
        pass
    sig = _signature(fn)
    found: Any = None
    if sig is not None and not _conversions(fn, sig):
        P = inspect.Parameter
        lo = hi = 0
        checks = []
        ok, var = True, False
        for p in sig.parameters.values():
            if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD):
                hint = p.annotation
                accepted = _SIMPLE_HINTS.get(hint) if isinstance(hint, type) else None
                if accepted:
                    checks.append((hi, accepted, hint is int))
                hi += 1
                if p.default is P.empty:
                    lo = hi
            elif p.kind == P.VAR_POSITIONAL:
                var = True
            elif p.kind == P.KEYWORD_ONLY and p.default is P.empty:
                ok = False
        found = (lo, -1 if var else hi, tuple(checks)) if ok else None
    try:
        _fast_plans[fn] = found
    except TypeError:
        pass
    return found


def check_arguments(name: str, fn: Any, args: list) -> Optional[str]:
    """Why these arguments cannot be passed to `fn`, or None. Only plain type hints are checked.

    Converts, in place, the arguments whose hint names a dataclass, a NamedTuple or an enum (a C# record arrives
    as a SimpleNamespace, a C# enum as an int: docs/PROTOCOL.md section 4).
    """
    fast = _fast_plan(fn)
    if fast is not None:                 # the common case, checked without inspect (a few hundred ns)
        lo, hi, checks = fast
        if lo <= len(args) and (hi < 0 or len(args) <= hi):
            for i, accepted, is_int in checks:
                if i < len(args):
                    value = args[i]
                    if value is not None and not isinstance(value, accepted) and not (is_int and isinstance(value, bool)):
                        break
            else:
                return None
    sig = _signature(fn)
    if sig is None:
        return None
    try:
        bound = sig.bind(*args)
    except TypeError as e:
        params = ", ".join(sig.parameters)
        return (f"{name}({params}) cannot take the {len(args)} argument(s) the C# method passes: {e}. "
                "Make the C# interface method match the Python signature.")
    for pname, value in bound.arguments.items():
        hint = sig.parameters[pname].annotation
        accepted = _SIMPLE_HINTS.get(hint) if isinstance(hint, type) else None
        if accepted and value is not None and not isinstance(value, accepted):
            if hint is int and isinstance(value, bool):
                continue
            return (f"argument '{pname}' of {name} is annotated {hint.__name__} but the C# method sends "
                    f"{python_type_name(value)}: change the C# parameter type or the Python annotation")
    conversions = _conversions(fn, sig)
    if conversions:
        for i, (pname, hint) in conversions.items():
            if i < len(args):
                try:
                    args[i] = convert(args[i], hint, f"argument '{pname}' of {name}")
                except ConversionError as e:
                    return f"{e}"
    return None


_NOT_AWAITABLE = frozenset((int, float, bool, str, bytes, tuple, list, dict, type(None), np.ndarray))


def _safe_str(obj: object) -> str:
    try:
        return str(obj)
    except Exception:  # a user exception whose __str__ itself fails
        return f"<{type(obj).__name__} whose str() failed>"


def _python_error(name: str, exc: BaseException) -> ErrorReply:
    tb = exc.__traceback__
    # drop this module's frame so the traceback starts in the user's function
    if tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception:
        text = ""
    return ErrorReply(ErrorKind.PYTHON_ERROR, type(exc).__name__, _safe_str(exc), text)


INTERRUPTED_MESSAGE = ("{name} was interrupted in the notebook (Kernel > Interrupt, or the stop button) while it "
                       "ran; the notebook goes on. Call it again when you are ready")


def stopped_error(name: str, exc: BaseException, reason: Optional[StopReason]) -> ErrorReply:
    """The error for a call stopped from outside: abandoned by its caller, or the notebook's interrupt."""
    if isinstance(exc, KeyboardInterrupt):
        return ErrorReply(ErrorKind.INTERRUPTED, "KeyboardInterrupt", INTERRUPTED_MESSAGE.format(name=name), "")
    why = StopReason.of(reason)
    return ErrorReply(why.error_kind, "", f"{name} was interrupted: {why}", "")


def raised_error(name: str, exc: BaseException, reason: Any = None) -> ErrorReply:
    """The error for an exception a call raised: stopped from outside (cancelled, interrupted), or the user's own."""
    if isinstance(exc, (CallCancelled, KeyboardInterrupt)):
        return stopped_error(name, exc, reason() if reason else None)
    return _python_error(name, exc)


def _raised(out: Outcome, exc: BaseException, reason: Any) -> None:
    """`out` failed with `exc`, which the user's code raised."""
    out.error = raised_error(out.name, exc, reason)
    if isinstance(exc, SystemExit):
        code = exc.code
        out.exit_status = 0 if code is None else code if isinstance(code, int) else 1


def invoke(call: Call, namespace: Namespace, reason: Any = None, stream: bool = False) -> Outcome:
    """Run `call` against `namespace`. Runs on whatever thread the executor chose.

    `reason` (a callable) says why the call was stopped when a CallCancelled arrives. With `stream` the
    result is an iterable whose items are sent one at a time (a C# IEnumerable<T>); the first is taken now.
    """
    out = Outcome(call.name, call.returns, call.args, time.time())
    t0 = time.perf_counter()
    try:
        fn = namespace.lookup(call.name)
    except FunctionNotFound as e:
        forget_prefix(call.name)               # a client may send any number of names: keep none that is missing
        out.error = ErrorReply(ErrorKind.FUNCTION_NOT_FOUND, "", str(e), "")
        return out
    problem = check_arguments(call.name, fn, call.args)
    if problem:
        out.error = ErrorReply(ErrorKind.BAD_ARGUMENTS, "", problem, "")
        return out
    try:
        out.result = fn(*call.args)
        if type(out.result) not in _NOT_AWAITABLE and inspect.isawaitable(out.result):
            if _loop_running():
                out.awaitable = out.result          # the executor awaits it on its own loop
                out.control = current_call()
                return out
            out.result = _run_coroutine(out.result, current_call())
    except BaseException as e:  # the user's code: anything it raises (even SystemExit) goes back to C#
        _raised(out, e, reason)
        out.duration = time.perf_counter() - t0
        return out
    out.duration = time.perf_counter() - t0
    if stream:
        return _open_stream(out, reason)
    return complete(out)


def _open_stream(out: Outcome, reason: Any) -> Outcome:
    try:
        iterator = iter(out.result)
    except TypeError:
        out.error = ErrorReply(ErrorKind.RESULT_MISMATCH, "",
                               f"{out.name} returned Python {python_type_name(out.result)}, which is not iterable, "
                               f"but the C# method returns IEnumerable<{csharp_name(out.returns)}>: return a "
                               "generator, list or other iterable", "")
        return out
    return next_item(out.name, out.returns, iterator, reason)


def next_item(name: str, returns: Any, iterator: Any, reason: Any = None) -> Outcome:
    """The next item of an open stream, coerced to the item type; `end` when there are no more."""
    out = Outcome(name, returns, [], time.time())
    out.stream = iterator
    t0 = time.perf_counter()
    try:
        out.result = next(iterator)
    except StopIteration:
        out.end = True
        out.stream = None
        return out
    except BaseException as e:  # raised inside the generator: it surfaces at this item in C#
        _raised(out, e, reason)
        out.stream = None
        return out
    finally:
        out.duration = time.perf_counter() - t0
    return complete(out)


def close_stream(iterator: Any) -> None:
    """Close a stream the client gave up on (a generator's `finally` blocks run now)."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def _run_coroutine(awaitable: Any, control: Any) -> Any:
    """asyncio.run, except that a cancelled call does not wait for the threads its coroutine started
    (asyncio.to_thread, run_in_executor): they cannot be stopped, and they end on their own."""
    import asyncio                          # here, not at import: it slows a cold start (PERFORMANCE.md)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_await(awaitable, control))
    finally:
        try:
            left = asyncio.all_tasks(loop)      # what the coroutine started and left running: cancelled, as by run
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            if control is None or control.why() is None:
                loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()                    # a default executor still busy is shut down without waiting


async def _await(awaitable: Any, control: Any = None) -> Any:
    """Await an `async def` result as a task its call's cancel can cancel (RunningCall.awaiting): it stops at
    the await it is in, and the call ends as a cancelled one (CallCancelled)."""
    if control is None:
        return await awaitable
    import asyncio
    task = asyncio.ensure_future(awaitable)
    control.awaiting(asyncio.get_running_loop(), task)
    try:
        return await task
    except asyncio.CancelledError:
        if control.why() is not None:
            raise CallCancelled from None
        raise
    finally:
        control.awaiting(None, None)


def _loop_running() -> bool:
    asyncio = sys.modules.get("asyncio")      # no asyncio imported: no loop can be running
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def complete(out: Outcome) -> Outcome:
    """Coerce the function's result to the declared C# type (or say why it cannot be)."""
    try:
        out.value = coerce(out.result, out.returns)
    except Exception as e:  # CoercionError, or whatever numpy raises on an odd value
        detail = e.detail if isinstance(e, CoercionError) else f"{type(e).__name__}: {_safe_str(e)}"
        out.error = ErrorReply(ErrorKind.RESULT_MISMATCH, "",
                               f"{out.name} returned Python {python_type_name(out.result)}, which cannot become the "
                               f"declared C# return type {csharp_name(out.returns)}" + (f" ({detail})" if detail else "")
                               + ": change the function's return value or the C# method's return type", "")
    return out


async def complete_awaitable(out: Outcome, reason: Any = None) -> Outcome:
    """Await an `async def` result on the running loop, then coerce it (the notebook's main-thread path)."""
    t0 = time.perf_counter()
    control = out.control
    try:
        out.result = await _await(out.awaitable, control)
    except BaseException as e:
        _raised(out, e, reason or (control.why if control is not None else None))
        return out
    finally:
        out.awaitable = None
        out.control = None
        out.duration += time.perf_counter() - t0
    return complete(out)
