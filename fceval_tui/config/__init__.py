"""Settings: command line > environment > .env > defaults, declared once as the fields of `Settings`.

`parsers` turns raw text into typed values, `settings` declares the fields, `loading` resolves them
from their sources, `env_template` documents them. A bad value stops with one line naming the
variable, the value and the expected form.
"""

from fceval_tui.config.loading import load_settings, read_env_file
from fceval_tui.config.settings import SETTINGS, Setting, Settings, help_suffix, setting, setting_for_env

__all__ = [
    "SETTINGS",
    "Setting",
    "Settings",
    "help_suffix",
    "load_settings",
    "read_env_file",
    "setting",
    "setting_for_env",
]
