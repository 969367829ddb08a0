"""inputs: the user's files behind data.name, model.name and model.weights -> inputs/, so that
DVC reruns prepare when the ImageFolder changes and extract when a model file does; both names
checked first, so that a typo stops before prepare.

Always run (dvc.yaml: always_changed) and cheap: no torch, no image decoding."""

from clipprobe import atomic, params
from clipprobe.data import inputs
from clipprobe.stage import DATA_LISTING, MODEL_RECORD, run


def main():
    p = params.load()
    model = inputs.model_record(p.model)   # first: a model typo stops in seconds, before the folder walk
    atomic.write_text(DATA_LISTING, inputs.data_listing(p.data))
    atomic.write_json(MODEL_RECORD, model)


if __name__ == "__main__":
    run(main)
