"""A run that signals itself: `python interrupt_driver.py SIGNAL POSITION OVERRIDES...`.

The signal is sent when the batch holding stream POSITION starts (before it is scored), as a
scheduler's SIGTERM, a Ctrl-C or an OOM killer's SIGKILL would arrive at any moment. Used by
test_interruption.py in a subprocess, so that the process really exits as a user's would.
"""

import os
import signal
import sys

from hydra import compose, initialize_config_dir

from foads.protocol.evaluator import StreamingEvaluator
from foads.registry import CONF_DIR
from foads.run import main_job


def main() -> None:
    name, position, overrides = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    start = StreamingEvaluator.on_test_batch_start

    def signalling_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if position in batch["index"].tolist():
            os.kill(os.getpid(), getattr(signal, name))
        return start(self, trainer, pl_module, batch, batch_idx, dataloader_idx)

    # Patched on purpose: a signal arrives just before the chosen position's batch.
    StreamingEvaluator.on_test_batch_start = signalling_start  # type: ignore[method-assign]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    main_job(cfg)


if __name__ == "__main__":
    main()
