"""Configuration: option registration and a backend group's view of its options."""

from oslo_config import cfg

from evs_driver import exception
from evs_driver.conf.backend import BACKEND_DEFAULTS_GROUP
from evs_driver.conf.common import DEFAULT_OPTS
from evs_driver.conf.opts import standalone_backend_opts

CONF = cfg.CONF

# Values that mean "nobody configured this in the backend's own group".
_UNSET = (cfg.Locations.opt_default, cfg.Locations.set_default)


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[DEFAULT]`` and ``[backend_defaults]`` options on ``conf``."""
    conf.register_opts(DEFAULT_OPTS)
    conf.register_opts(standalone_backend_opts(), group=BACKEND_DEFAULTS_GROUP)


def validate(conf: cfg.ConfigOpts) -> None:
    """Read every ``[DEFAULT]`` option now, so a bad value fails at start, naming its file."""
    for opt in DEFAULT_OPTS:
        try:
            conf[opt.dest]
        except (cfg.ConfigFileValueError, ValueError) as exc:
            raise option_error(conf, "DEFAULT", opt.dest, _short(exc)) from exc


def read_group(conf: cfg.ConfigOpts, group: str, opts: list) -> dict:
    """Every option of ``opts`` in ``group`` by name; a bad value fails naming its file."""
    values = {}
    for opt in opts:
        try:
            values[opt.dest] = conf[group][opt.dest]
        except (cfg.ConfigFileValueError, ValueError) as exc:
            raise option_error(conf, group, opt.dest, _short(exc)) from exc
    return values


def describe_files(conf: cfg.ConfigOpts) -> str:
    """The config files in use, for error messages."""
    files = list(conf.config_file or []) + list(conf.config_dir or [])
    return ", ".join(files) if files else "no config file (built-in defaults)"


def option_error(conf: cfg.ConfigOpts, group: str, name: str, reason: str) -> exception.ConfigError:
    """A ``ConfigError`` naming the option and the file it came from."""
    try:
        location = conf.get_location(name, group)
        where = location.detail if location and location.detail else describe_files(conf)
    except (cfg.Error, ValueError):
        # An invalid value makes get_location fail too: name the files instead.
        where = describe_files(conf)
    return exception.ConfigError(reason=f"[{group}] {name} ({where}): {reason}")


def backend_option_error(conf, name: str, reason: str) -> exception.ConfigError:
    """A ``ConfigError`` for a backend option, also under a foreign (Cinder) configuration."""
    if isinstance(conf, BackendConf):
        return conf.option_error(name, reason)
    group = getattr(conf, "config_group", None) or "backend"
    return exception.ConfigError(reason=f"[{group}] {name}: {reason}")


class BackendConf:
    """A backend group's options, falling back to ``[backend_defaults]`` for unset ones.

    Attribute access like an oslo.config group (``[DEFAULT]`` options too), plus Cinder's
    ``Configuration`` helpers (``config_group``, ``safe_get``, ``append_config_values``), so the
    driver runs unchanged under Cinder.
    """

    def __init__(self, conf: cfg.ConfigOpts, group: str):
        self._conf = conf
        self.config_group = group
        self.append_config_values(standalone_backend_opts())

    def append_config_values(self, opts: list) -> None:
        """Register ``opts`` in this group and in ``[backend_defaults]``."""
        for group in (self.config_group, BACKEND_DEFAULTS_GROUP):
            self._conf.register_opts(opts, group=group)

    def validate(self) -> None:
        """Read every backend option now, so a bad value fails at start."""
        for opt in standalone_backend_opts():
            getattr(self, opt.dest)

    def option_error(self, name: str, reason: str) -> exception.ConfigError:
        """A ``ConfigError`` naming this group's option ``name`` and its file."""
        return option_error(self._conf, self.config_group, name, reason)

    def safe_get(self, name: str):
        """The option's value, or None when no such option is registered."""
        try:
            return getattr(self, name)
        except AttributeError:
            return None

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        group = self.config_group
        try:
            location = self._conf.get_location(name, group)
            if location is None or location.location in _UNSET:
                group = BACKEND_DEFAULTS_GROUP
            return self._conf[group][name]
        except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
            return self._default_group(name)
        except (cfg.ConfigFileValueError, ValueError) as exc:
            raise option_error(self._conf, group, name, _short(exc)) from exc

    def _default_group(self, name: str):
        # Service-wide options (state_path, lock_timeout) are read through the group too.
        try:
            return self._conf[name]
        except cfg.NoSuchOptError as exc:
            raise AttributeError(name) from exc
        except (cfg.ConfigFileValueError, ValueError) as exc:
            raise option_error(self._conf, "DEFAULT", name, _short(exc)) from exc


def _short(exc: Exception) -> str:
    """oslo.config's reason without its location prefix."""
    text = str(exc)
    return text.split(" is not valid: ", 1)[-1]
