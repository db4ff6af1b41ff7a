"""Where the running ``evs-volume`` listens, remembered per configuration.

Finding the control socket means resolving ``state_path`` from the config files, and
importing oslo.config costs more than the rest of a client command. So a command that
loaded the configuration remembers the state path it resolved, in the user's cache
(``$XDG_CACHE_HOME/evs``, else ``~/.cache/evs``, mode 0600 in 0700), together with all
it was resolved from:

- the inputs, hashed: the ``--config-file`` arguments, the working directory, the user and
  the environment variables oslo.config and evs read (``EVS_STATE_PATH``, ``HOME``,
  ``SNAP*``, ``OS_*``);
- the identity (device, inode, mode, size, mtime, ctime) or absence of every place
  oslo.config looks for a config file or directory, of each file it read, of each config
  directory (its mtime moves when a file is added or removed) and of the module holding
  ``state_path``'s default.

A later command takes the entry only when all of it is unchanged, so oslo.config stays
the one parser of config files. An entry is written only when nothing it depends on (nor
the directories holding the places searched) changed in the ``RACY_SECONDS`` before the
configuration was loaded, as git does for its index: a file changed while it was read, or
within one timestamp tick of it, is never trusted, and any later change moves its ctime,
which no one can set back. Only a configuration that logs as oslo.log does by default is
remembered, so the client logs exactly as the whole command would.
"""

import json
import logging
import os

try:  # hashlib loads OpenSSL (a few ms); blake2 is built into the interpreter
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import blake2b

LOG = logging.getLogger(__name__)
PROJECT, PROG = "evs_driver", "evs"  # oslo.config's project and program names for evs
VERSION = 1
RACY_SECONDS = 2  # > the coarsest timestamp granularity of a Linux file system (1 s)
MAX_ENTRIES = 16
_ENVIRONMENT = ("EVS_STATE_PATH", "HOME", "SNAP", "SNAP_COMMON", "XDG_CACHE_HOME")
_DEFAULTS_MODULE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "conf", "common.py")


def lookup(config_files: list[str]) -> str | None:
    """The state path remembered for this configuration, None when not known for sure."""
    try:
        key = _key(config_files)
        entry = _read_entries(_cache_file()).get(key)
        if not entry or any(_identity(path) != seen for path, seen in entry["files"]):
            return None
        return entry["state_path"]
    except Exception:  # unreadable, or not what this version writes: load the configuration
        LOG.debug("Not using the remembered state path", exc_info=True)
        return None


def remember(config_files: list[str], conf, state_path: str, loaded_from_ns: int) -> None:
    """Remember ``state_path`` for this configuration, loaded into ``conf`` by oslo.config
    from ``loaded_from_ns`` (``time.time_ns()``) on, when it is safe to."""
    try:
        path = _cache_file()
        files = _files_read(conf)
        if files is None:
            return
        recent = loaded_from_ns - RACY_SECONDS * 1_000_000_000
        identities = [(p, _identity(p)) for p in files]
        parents = {os.path.dirname(p) for p in _places()}
        for _path, seen in identities + [(p, _identity(p)) for p in parents]:
            if seen is not None and max(seen[-2:]) >= recent:
                return  # changed too recently to be sure what was read
        entries = _read_entries(path)
        key = _key(config_files)
        entries.pop(key, None)
        entries[key] = {"state_path": state_path, "files": identities}
        _write_entries(path, dict(list(entries.items())[-MAX_ENTRIES:]))
    except Exception:  # a cache: not writing it only makes the next command slower
        LOG.debug("Not remembering the state path %s", state_path, exc_info=True)


def _files_read(conf) -> list[str] | None:
    """Every path the resolution depends on, or None when oslo.config did something this
    cache cannot follow (a config source, a config dir named in a file, logging options)."""
    from oslo_config import cfg
    from oslo_log import _options

    default = cfg.Locations.opt_default
    if conf.config_source or conf.get_location("config_dir").location != default:
        return None
    if conf.get_location("config_file").location not in (default, cfg.Locations.command_line):
        return None
    for _group, opts in _options.list_opts():
        if not all(_by_default(conf, opt.dest) for opt in opts):
            return None
    places = _places()
    found = cfg.find_config_files(project=PROJECT, prog=PROG)
    found += cfg.find_config_dirs(project=PROJECT, prog=PROG)
    if not set(found) <= set(places):
        return None  # oslo.config searches where this module does not look
    files = [*places, _DEFAULTS_MODULE, *conf.config_file]
    for directory in conf.config_dir:
        files.append(directory)
        files += sorted(
            os.path.join(directory, name)
            for name in os.listdir(directory)
            if name.endswith(".conf")
        )
    return [os.path.abspath(os.path.expanduser(p)) for p in files]


def _by_default(conf, name: str) -> bool:
    """True when option ``name`` has its default value: nobody set it."""
    from oslo_config import cfg

    if name not in conf:
        return True  # not registered: nothing reads it
    location = conf.get_location(name)
    if location is None:  # what oslo.config answers for an option that is None
        return conf[name] is None
    return location.location == cfg.Locations.opt_default


def _places() -> list[str]:
    """Every path oslo.config checks for a default config file or directory of evs."""
    home = os.path.expanduser("~")
    dirs = [os.path.join(home, "." + PROJECT), home, os.path.join("/etc", PROJECT), "/etc"]
    for snap in ("SNAP_COMMON", "SNAP"):
        if os.environ.get(snap):
            dirs.append(os.path.join(os.environ[snap], "etc", PROJECT))
    return [
        os.path.join(d, name + ext)
        for d in dirs
        for name in (PROJECT, PROG)
        for ext in (".conf", ".conf.d")
    ]


def _identity(path: str) -> list[int] | None:
    """What changes when ``path`` is written, replaced or removed (None: absent)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return [st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _key(config_files: list[str]) -> str:
    environment = {
        name: value
        for name, value in os.environ.items()
        if name in _ENVIRONMENT or name.startswith("OS_")
    }
    inputs = [VERSION, os.geteuid(), os.getcwd(), list(config_files), environment]
    return blake2b(json.dumps(inputs, sort_keys=True).encode(), digest_size=16).hexdigest()


def _cache_file() -> str:
    """The cache file; ``OSError`` when there is no private place for it."""
    home = os.environ.get("HOME", "")
    if not os.path.isabs(home) or not os.path.isdir(home):
        raise FileNotFoundError("no home directory to keep a cache in")
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(home, ".cache")
    return os.path.join(base, "evs", "control-sockets.json")


def _read_entries(path: str) -> dict:
    """The entries of a cache file only this user can have written ({} when none)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}
    with os.fdopen(fd) as file:
        for st in (os.fstat(fd), os.lstat(os.path.dirname(path))):
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return {}
        data = json.load(file)
    return data["entries"] if data.get("version") == VERSION else {}


def _write_entries(path: str, entries: dict) -> None:
    """Replace the cache file in one rename (a reader sees the old one or the new one)."""
    import tempfile  # only here: it imports shutil, random and the compressors

    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".control-sockets.")
    try:
        with os.fdopen(fd, "w") as file:
            json.dump({"version": VERSION, "entries": entries}, file)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
