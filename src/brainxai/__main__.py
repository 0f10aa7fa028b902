"""``python -m brainxai ...`` (and ``torchrun --nproc-per-node N -m brainxai train ...``): the command line."""

from brainxai.cli import app

if __name__ == "__main__":
    app(prog_name="brainxai")
