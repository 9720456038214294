"""`python -m search check SPACE.yaml`: a dry run of a search in seconds, without Ray or trials.

1. Validate the space file and its data with `load_plan` (every mistake is a ConfigError: exit 2).
2. Sample 3 trial configs the way the search does (`sample`): the baselines first, then a seeded
   Optuna sampler (the tuner's settings) on an in-memory study over `optuna_space(plan.space)`.
3. Build the task of the first config on the runtime one trial would get (`resources.cpu` threads;
   CUDA with AMP/channels_last when `resources.gpu` > 0 and a GPU is here) and time one training
   step (`Task.train_step`) and one validation batch (`Task.eval_batch`), each the second call after
   a warm-up call unless the first took longer than WARMUP_LIMIT_S (then the cold time is reported)
   (`measure`).
4. Estimate the time per epoch (train step x train batches + val batch x val batches), per trial
   (x max epochs) and for the whole search (x rounds of max_concurrent trials; an upper bound, ASHA
   stops most trials early), and the peak memory of a trial: the RSS increase on CPU, or
   `torch.cuda.max_memory_allocated` with a suggested `resources.gpu` fraction on CUDA (`result`).
5. Whatever the task says about its data (`Task.describe_data`: a detection task's box statistics
   behind anchor choices, for example).

`check_space_file` returns the numbers (`CheckResult`); `run_check` prints them (`show`).
"""

from search.check.measure import Measurement
from search.check.result import CheckResult, check_space_file
from search.check.sample import sample_configs
from search.check.show import print_memory, run_check

__all__ = ["CheckResult", "Measurement", "check_space_file", "print_memory", "run_check", "sample_configs"]
