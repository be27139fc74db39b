"""Run one command isolated with Linux namespaces: the sandbox of every grading kernel.

``python sandbox.py SPEC.json -- COMMAND ...`` (started by :mod:`diffcl_lite.course.worker`
as the "kernel" of a run; this file imports nothing from ``diffcl_lite`` and needs no privilege).
What it does, with the kernel interfaces only (no Docker, no bubblewrap, no setuid helper):

1. ``unshare`` a new **user** namespace (the grader's uid becomes uid 1000 inside; no other uid
   exists there), **mount**, **PID**, **network** (only a loopback interface), IPC, UTS and cgroup
   namespaces;
2. fork PID 1 of the new PID namespace (a small init: it reaps every process, keeps the last
   kilobytes of the kernel's raw stdout/stderr, and exits with the kernel — at which point Linux
   kills every process left in the namespace, ``setsid`` or not). PID 1 dies with the launcher
   (``PR_SET_PDEATHSIG``), so killing the launcher ends the whole sandbox;
3. build a new root on a small tmpfs: read-only bind mounts of ``/usr`` (and the ``/bin``, ``/lib``
   links), the Python installation and virtual environment, the package, a few files of ``/etc``;
   device nodes ``null zero full random urandom``; a private ``/proc`` (only the sandbox's
   processes); a private ``/tmp`` of bounded size (the working directory lives there); the
   per-run folders the grader reads from and writes to; then ``pivot_root`` into it and detach the
   old root, so nothing else of the machine — the master notebooks, other submissions, the output
   folder, the grader's ``/proc`` — is reachable by any path;
4. start the command with resource limits (processes, data segment, CPU time, file size, open
   files, no core dumps), ``no_new_privs``, an empty capability bounding set and a non-zero uid (so
   ``execve`` keeps no capability: the learner cannot remount, mount or ``chroot``), stdin
   ``/dev/null``, in a clean environment given by the spec.

The kernel's ZeroMQ sockets live in a folder that PID 1 remounts read-only as soon as they exist
(``freeze``): a learner can then neither remove them nor plant a link where the grader connects.

``python sandbox.py --probe`` checks that this machine provides all of it (exit 0) or
prints the first layer it lacks.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import re
import select
import signal
import stat
import sys
import time
from typing import Any

__all__ = ["CLONE_NEWNS", "CLONE_NEWCGROUP", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWUSER", "CLONE_NEWPID",
           "CLONE_NEWNET", "MNT_DETACH", "SYS_PIVOT_ROOT", "INSIDE_UID", "DEVICES", "EXIT_SETUP", "SandboxError",
           "mount", "bind", "build_root", "RECORD_NAME", "MAX_RECORDS_BYTES", "run", "sandbox_uid", "probe_spec",
           "base_binds", "base_symlinks", "base_files", "python_prefixes", "probe", "main"]

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_MOVE, MS_REC, MS_PRIVATE, MS_RELATIME = 8192, 16384, 1 << 18, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
#: statvfs flag -> mount flag (flags a bind mount must keep when it is remounted read-only)
_ST_TO_MS = ((1, MS_RDONLY), (2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC), (1024, MS_NOATIME),
             (2048, MS_NODIRATIME), (4096, MS_RELATIME))
SYS_PIVOT_ROOT = {"x86_64": 155, "amd64": 155, "aarch64": 41, "arm64": 41, "riscv64": 41, "ppc64le": 203,
                  "ppc64": 203, "s390x": 217, "i686": 217, "i386": 217, "armv7l": 218}
INSIDE_UID = 1000
DEVICES = ("null", "zero", "full", "random", "urandom")
EXIT_SETUP = 70  # the sandbox could not be built (message on stderr)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


class SandboxError(RuntimeError):
    """A layer of the sandbox is missing on this machine (the message names it)."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(err)} (errno {err})")


def _b(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(_b(src), _b(target), _b(fstype), flags, _b(data)), f"mount {src} on {target}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _mount_flags_of(path: str) -> int:
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _ST_TO_MS if f & st)


def _makedirs_for(target: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "a").close()


def bind(src: str, target: str, *, readonly: bool) -> None:
    """Bind ``src`` on ``target`` (not recursive: mounts below ``src`` are not carried), optionally read-only."""
    _makedirs_for(target, os.path.isdir(src))
    mount(src, target, None, MS_BIND)
    flags = _mount_flags_of(src) | MS_NOSUID | (MS_RDONLY if readonly else 0)
    if os.path.isdir(src) or not src.startswith("/dev/"):
        flags |= MS_NODEV
    mount(None, target, None, MS_REMOUNT | MS_BIND | flags)


def _pivot_root(new_root: str) -> None:
    nr = SYS_PIVOT_ROOT.get(platform.machine().lower())
    if nr is None:
        raise SandboxError(f"pivot_root: unknown system call number on {platform.machine()}")
    os.chdir(new_root)
    _check(_libc.syscall(nr, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "detaching the old root")
    os.chdir("/")


def _loopback_up() -> None:
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14x", b"lo", 0x1 | 0x8 | 0x40)  # IFF_UP | IFF_LOOPBACK | IFF_RUNNING
        fcntl.ioctl(s.fileno(), 0x8914, ifr)  # SIOCSIFFLAGS


def build_root(spec: dict[str, Any]) -> None:
    """Mount the new root described by ``spec`` and pivot into it (runs in PID 1, before the command)."""
    root = spec["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(spec.get('root_size_mb', 8))}m,mode=755")
    for link, target in spec.get("symlinks", []):
        path = root + link
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(target, path)
    tmp = root + "/tmp"
    os.makedirs(tmp, exist_ok=True)
    mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(spec.get('tmp_size_mb', 256))}m,mode=1777")
    for src, dst, mode in spec.get("binds", []):
        if os.path.lexists(src):
            bind(src, root + dst, readonly=(mode != "rw"))
    for path, size_mb in spec.get("tmpfs", []):  # private, size-limited folders (what the grader collects)
        os.makedirs(root + path, exist_ok=True)
        mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={int(size_mb)}m,mode=0755")
        os.chown(root + path, INSIDE_UID, INSIDE_UID)
    for d in spec.get("tmp_dirs", []):
        os.makedirs(root + d, exist_ok=True)
        os.chown(root + d, INSIDE_UID, INSIDE_UID)
    for src, dst in spec.get("copies", []):
        try:
            fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as fh:
            if stat.S_ISREG(os.fstat(fd).st_mode) and os.fstat(fd).st_size < 16 * 2**20:
                os.makedirs(os.path.dirname(root + dst), exist_ok=True)
                with open(root + dst, "wb") as out:
                    out.write(fh.read())
                os.chown(root + dst, INSIDE_UID, INSIDE_UID)
    dev = root + "/dev"
    os.makedirs(dev, exist_ok=True)
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            bind(f"/dev/{name}", f"{dev}/{name}", readonly=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    os.makedirs(dev + "/shm", exist_ok=True)
    mount("tmpfs", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    for path, text in spec.get("files", {}).items():
        os.makedirs(os.path.dirname(root + path), exist_ok=True)
        with open(root + path, "w", encoding="utf-8") as fh:
            fh.write(text)
    os.makedirs(root + "/proc", exist_ok=True)
    try:
        mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except SandboxError as exc:
        if spec.get("require_proc", True):
            raise SandboxError(f"a private /proc: {exc}") from None
    _pivot_root(root)
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    host = spec.get("hostname", "sandbox").encode()
    _libc.sethostname(host, len(host))
    try:
        _loopback_up()
    except OSError:
        pass  # not needed by the kernel (its sockets are files), only nice to have


def _set_limits(limits: dict[str, int]) -> None:
    import resource

    table = {"nproc": ("RLIMIT_NPROC", 1), "data_mb": ("RLIMIT_DATA", 2**20), "cpu_s": ("RLIMIT_CPU", 1),
             "fsize_mb": ("RLIMIT_FSIZE", 2**20), "nofile": ("RLIMIT_NOFILE", 1), "core": ("RLIMIT_CORE", 1)}
    for key, value in limits.items():
        if key not in table or value is None:
            continue
        name, scale = table[key]
        res = getattr(resource, name)
        v = int(value) * scale
        soft, hard = resource.getrlimit(res)
        if hard != resource.RLIM_INFINITY:
            v = min(v, hard)
        resource.setrlimit(res, (v, v))


def _drop_privileges() -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    try:
        last = int(open("/proc/sys/kernel/cap_last_cap").read())
    except (OSError, ValueError):
        last = 63
    for cap in range(last + 1):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            _check(-1, f"dropping capability {cap}")


def _freeze(spec: dict[str, Any], deadline: float) -> bool:
    """Remount the socket folder read-only once it holds ``count`` sockets; True when done (or nothing to do)."""
    fr = spec.get("freeze")
    if not fr:
        return True
    try:
        n = sum(1 for e in os.scandir(fr["dir"]) if stat.S_ISSOCK(e.stat(follow_symlinks=False).st_mode))
    except OSError:
        n = 0
    if n < int(fr.get("count", 1)) and time.monotonic() < deadline:
        return False
    flags = _mount_flags_of(fr["dir"]) | MS_RDONLY | MS_NOSUID | MS_NODEV
    try:
        mount(fr["dir"], fr["dir"], None, MS_BIND)
        mount(None, fr["dir"], None, MS_REMOUNT | MS_BIND | flags)
    except SandboxError as exc:
        os.write(2, f"sandbox: could not freeze {fr['dir']}: {exc}\n".encode())
    return True


RECORD_NAME = re.compile(r"^(cell-\d+|final)\.(json|npz)$")
MAX_RECORDS_BYTES = 96 * 2**20


def _collect(inner: str, host_fd: int) -> list[str]:
    """Copy the records (``inner``, inside) to the host folder ``host_fd``: regular files with the expected
    names only, never through a link, within the size limit. Returns what was refused."""
    refused, total = [], 0
    try:
        names = sorted(os.listdir(inner))
    except OSError as exc:
        return [f"no records ({exc.strerror})"]
    for name in names:
        if not RECORD_NAME.match(name):
            refused.append(name[:60])
            continue
        try:
            fd = os.open(os.path.join(inner, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            refused.append(name)
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or total + info.st_size > MAX_RECORDS_BYTES:
                refused.append(name)
                continue
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=host_fd)
            try:
                left = info.st_size
                while left > 0:
                    chunk = os.read(fd, min(left, 1 << 20))
                    if not chunk:
                        break
                    os.write(out, chunk)
                    left -= len(chunk)
                    total += len(chunk)
            finally:
                os.close(out)
        finally:
            os.close(fd)
    return refused


def _exec_command(spec: dict[str, Any], argv: list[str], out_w: int) -> None:
    """In the forked child: its own session, stdin from /dev/null, output to ``out_w``, the limits, no
    privileges, then the command (never returns)."""
    try:
        os.setsid()
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.closerange(3, 65536)
        _set_limits({"core": 0, **spec.get("limits", {})})
        os.chdir(spec.get("cwd", "/tmp"))
        _drop_privileges()
        if spec.get("_root_grader"):
            os.setgroups([])
            os.setgid(INSIDE_UID)
            os.setuid(INSIDE_UID)
        os.execve(argv[0], argv, spec.get("env", {}))
    except BaseException as exc:  # noqa: BLE001 - report anything, never return into the init loop
        os.write(2, f"sandbox: cannot start {argv[0]}: {exc}\n".encode())
    os._exit(127)


def _init_signals(pid: int, terminate: list[int]) -> int:
    """PID 1's signals: SIGTERM/SIGHUP end the sandbox (noted in ``terminate``), SIGINT goes to the command;
    returns the read end of a pipe that every signal (a child's exit too) wakes."""

    def on_term(signum: int, _frame: Any) -> None:
        terminate.append(signum)

    def forward(signum: int, _frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    wake_r, wake_w = os.pipe()  # a signal (SIGTERM, a child's exit) wakes the loop at once
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    return wake_r


def _kill_and_reap_all(timeout_s: float = 10.0) -> None:
    """SIGKILL every process left in the namespace (setsid or not; never PID 1 itself) and reap them."""
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            got, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if got == 0:
            time.sleep(0.01)


def _init(spec: dict[str, Any], argv: list[str], ready_w: int) -> int:
    """PID 1 of the sandbox: build the root, start the command, reap everything; when the command ends (or
    SIGTERM asks), kill every process left, copy the records out, exit with the command's code."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # not dumpable: a process of the sandbox that shares PID 1's uid (a grader not run as root) can
    # neither ptrace it nor open its /proc files (PID 1 keeps capabilities and a folder of the host)
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    collect = spec.get("collect")
    host_fd = None
    try:
        if collect:
            host_fd = os.open(collect["host"], os.O_RDONLY | os.O_DIRECTORY)
        build_root(spec)
    except Exception as exc:  # a layer is missing: say which, exit
        os.write(ready_w, f"{exc}".encode()[:2000])
        return EXIT_SETUP
    os.close(ready_w)
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the command
        _exec_command(spec, argv, out_w)
    os.close(out_w)
    terminate: list[int] = []
    wake_r = _init_signals(pid, terminate)
    keep = int(spec.get("log_tail", 8192))
    tail = b""
    os.set_blocking(out_r, False)
    frozen_by = time.monotonic() + float((spec.get("freeze") or {}).get("timeout_s", 120))
    frozen = False
    code = None
    while code is None and not terminate:
        try:
            ready, _, _ = select.select([out_r, wake_r], [], [], 0.05 if not frozen else 1.0)
        except InterruptedError:
            ready = []
        if wake_r in ready:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
        if out_r in ready:
            try:
                chunk = os.read(out_r, 65536)
            except BlockingIOError:
                chunk = b""
            tail = (tail + chunk)[-keep:]
        if not frozen:
            frozen = _freeze(spec, frozen_by)
        while True:
            try:
                got, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                code = code if code is not None else 1
                break
            if got == 0:
                break
            if got == pid:
                code = os.waitstatus_to_exitcode(status)
                code = 128 - code if code < 0 else code
    _kill_and_reap_all()
    if collect and host_fd is not None:
        refused = _collect(collect["inner"], host_fd)
        if refused:
            tail += ("\nsandbox: refused to hand over " + ", ".join(refused[:10]) + "\n").encode()
    try:
        tail = (tail + os.read(out_r, 65536))[-keep:]
    except OSError:
        pass
    if tail:
        os.write(2, tail)
    if code is None:
        code = 128 + (terminate[0] if terminate else 9)
    return code


def _write_id_maps(pid: int, uid: int, gid: int, root_grader: bool, go_r: int, done_w: int) -> None:
    """In the helper child: once ``go_r`` says the launcher has unshared, write its uid/gid maps, answer
    ``ok`` (or what failed) on ``done_w`` and exit."""
    msg = b""
    try:
        os.read(go_r, 1)
        if not root_grader:
            _write(f"/proc/{pid}/setgroups", "deny")
        # as root, uid 0 stays root inside too (PID 1 builds the root as it); the command runs as 1000
        extra = "0 0 1\n" if root_grader else ""
        _write(f"/proc/{pid}/uid_map", f"{extra}{INSIDE_UID} {uid} 1\n")
        _write(f"/proc/{pid}/gid_map", f"{extra}{INSIDE_UID} {gid} 1\n")
    except OSError as exc:
        msg = f"writing the uid/gid maps: {exc}".encode()
    os.write(done_w, msg or b"ok")
    os._exit(0)


def run(spec: dict[str, Any], argv: list[str]) -> int:
    """Launcher: create the namespaces, fork PID 1, wait for it (its exit code is the command's)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the worker ends: so does the sandbox
    uid, gid = os.getuid(), os.getgid()
    root_grader = uid == 0
    if root_grader:
        # root is exempt from RLIMIT_NPROC and passes every permission check: the sandbox user is
        # an unused unprivileged uid instead (one per sandbox, so their process counts are separate)
        uid = gid = sandbox_uid(os.getpid())
        for path in spec.get("chown", []):
            for dirpath, dirnames, filenames in os.walk(path):
                for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
                    os.lchown(name, uid, gid)
        spec = {**spec, "_root_grader": True}
    me = os.getpid()
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    helper = os.fork()
    if helper == 0:  # stays in the host namespaces and writes the maps of the launcher's new user namespace
        os.close(go_w)
        os.close(done_r)
        _write_id_maps(me, uid, gid, root_grader, go_r, done_w)
    os.close(go_r)
    os.close(done_w)
    try:
        _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
                             | CLONE_NEWCGROUP), "unshare (user namespaces)")
    finally:
        os.write(go_w, b"1")
        answer = os.read(done_r, 4096)
        os.waitpid(helper, 0)
    if answer != b"ok":
        raise SandboxError(answer.decode(errors="replace"))
    if root_grader:
        os.setuid(0)  # take the mapped identity (and the capabilities) inside the new namespace
        os.setgid(0)
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        code = 1
        try:
            code = _init(spec, argv, ready_w)
        finally:
            os._exit(code)
    os.close(ready_w)

    def forward(signum: int, _frame: Any) -> None:
        try:
            os.kill(child, signum)
        except OSError:
            pass

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, forward)
    problem = b""
    while True:
        try:
            chunk = os.read(ready_r, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        problem += chunk
    if problem:
        sys.stderr.write(f"sandbox: cannot isolate the run: {problem.decode(errors='replace')}\n")
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def sandbox_uid(pid: int) -> int:
    """The unprivileged uid (and gid) a sandbox started by root runs as: unused by any account, one per launcher."""
    return 1_900_000_000 + pid % 100_000_000


def probe_spec(root: str, python: str, prefixes: list[str]) -> dict[str, Any]:
    """A minimal spec (for ``--probe``): the Python installation only."""
    return {"root": root, "binds": [[p, p, "ro"] for p in prefixes] + base_binds(), "symlinks": base_symlinks(),
            "files": base_files(), "env": {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}, "cwd": "/tmp",
            "limits": {"nproc": 64}, "tmp_size_mb": 16}


def base_binds() -> list[list[str]]:
    """Read-only system folders and files every sandbox gets."""
    binds = []
    for d in ("/usr", "/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin"):
        if os.path.isdir(d) and not os.path.islink(d):
            binds.append([d, d, "ro"])
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/nsswitch.conf",
              "/etc/mime.types", "/etc/fonts", "/etc/alternatives", "/etc/os-release", "/etc/timezone",
              "/sys/devices/system/cpu"):
        if os.path.exists(f):
            binds.append([f, f, "ro"])
    return binds


def base_symlinks() -> list[list[str]]:
    """Merged-/usr links (``/bin -> usr/bin``...) as the host has them."""
    return [[d, os.readlink(d)] for d in ("/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin") if os.path.islink(d)]


def base_files() -> dict[str, str]:
    """A passwd and group that know only the sandbox user, and a hosts file."""
    return {"/etc/passwd": f"root:x:0:0::/:/usr/sbin/nologin\nlearner:x:{INSIDE_UID}:{INSIDE_UID}::/tmp/home:/bin/sh\n",
            "/etc/group": f"root:x:0:\nlearner:x:{INSIDE_UID}:\n",
            "/etc/hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n"}


def python_prefixes(python: str | None = None) -> list[str]:
    """Folders the Python interpreter needs: the virtual environment and the installation it was made from."""
    out: list[str] = []
    for p in {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}:
        for q in (p, os.path.realpath(p)):
            if q and os.path.isdir(q) and q not in out and q != "/" and not q.startswith("/usr"):
                out.append(q)
    exe = os.path.realpath(python or sys.executable)
    top = os.path.dirname(os.path.dirname(exe))
    if top not in out and top != "/" and not top.startswith("/usr"):
        out.append(top)
    return sorted(out)


def probe(timeout_s: float = 20.0) -> str | None:
    """None when this machine can run the sandbox, else the reason (one line)."""
    import subprocess
    import tempfile

    if not sys.platform.startswith("linux"):
        return f"isolation needs Linux namespaces; this is {sys.platform}"
    with tempfile.TemporaryDirectory(prefix="diffcl-probe-") as tmp:
        root = os.path.join(tmp, "root")
        os.mkdir(root)
        spec_path = os.path.join(tmp, "spec.json")
        with open(spec_path, "w") as fh:
            json.dump(probe_spec(root, sys.executable, python_prefixes()), fh)
        code = ("import os, socket\n"
                "assert os.getuid() == %d and not os.path.exists(%r)\n"
                "assert sorted(int(p) for p in os.listdir('/proc') if p.isdigit())[:1] == [1]\n"
                "try:\n    os.mkdir('/escape')\nexcept OSError:\n    pass\nelse:\n    raise SystemExit('root writable')\n"
                "open('/tmp/x', 'w').write('ok')\n") % (INSIDE_UID, tmp)
        try:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), spec_path, "--", sys.executable, "-I",
                                   "-c", code], capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"the sandbox did not start ({type(exc).__name__}: {exc})"
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            return lines[-1][:300] if lines else f"the sandbox test exited with {proc.returncode}"
    return None


def main(argv: list[str]) -> int:
    if argv[:1] == ["--probe"]:
        why = probe()
        print("ok" if why is None else why)
        return 0 if why is None else 1
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: sandbox.py SPEC.json -- COMMAND ... | --probe\n")
        return 2
    with open(argv[0], encoding="utf-8") as fh:
        spec = json.load(fh)
    try:
        return run(spec, argv[2:])
    except (SandboxError, OSError) as exc:
        sys.stderr.write(f"sandbox: cannot isolate the run: {exc}\n")
        return EXIT_SETUP


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
