"""actorlearner: asynchronous actor-learner (IMPALA, V-trace) training for gymnasium envs in TF2/Keras 3.

Importing this package does not import TensorFlow (actor processes never need it); the learner imports
it when training starts.
"""

from .config import Config, ConfigError
from .config_sources import preset_config, resume_config
from .loading import evaluate, load_policy, make_env
from .runner import train

__all__ = ["Config", "ConfigError", "preset_config", "resume_config", "train", "load_policy", "make_env",
           "evaluate"]
__version__ = "0.1.0"
