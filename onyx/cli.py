"""The `onyx` command. Serving commands need only the default install; training commands need
the `train` extra (torch) and import it only when they run.
"""

from __future__ import annotations

import click

from onyx import __version__
from onyx.bench.cli import bench_command
from onyx.serve.cli import classify_command, serve_command
from onyx.train.cli import demo_command, export_command, train_group
from onyx.train.image_cli import data_group, evaluate_command, train_image_command
from onyx.train.text_cli import train_text_command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="onyx")
def main() -> None:
    """Onyx: fine-tune classifiers, export them to ONNX, serve them over gRPC.

    \b
    A typical session:
      onyx demo                                   # the whole path on bundled data
      onyx train image data/ --out runs/pets      # fine-tune on a folder of images
      onyx export runs/pets/best.pt --name pets   # to ONNX, parity-checked, into models/
      onyx serve                                  # serve models/ over gRPC on :50051
      onyx classify --model pets photo.jpg        # ask the server
    """


train_group.add_command(train_image_command)
train_group.add_command(train_text_command)
main.add_command(evaluate_command)
main.add_command(data_group)
main.add_command(demo_command)
main.add_command(train_group)
main.add_command(export_command)
main.add_command(serve_command)
main.add_command(classify_command)
main.add_command(bench_command)
