"""prepare: the dataset's standard splits and class names -> data/prepared/."""

from clipprobe import params
from clipprobe.data import indexed, prepared
from clipprobe.data.prepare import prepare
from clipprobe.probe.validation import validation_split
from clipprobe.stage import PREPARED, run


def main():
    p = params.load()
    info = prepare(p.data, PREPARED)
    # Fail now, not after hours of extraction. C and tune.* only decide whether to check: the
    # outputs never depend on them, so dvc.yaml leaves them to tune (which checks again) and a
    # new C never reruns prepare.
    if p.C == "auto" and "val" not in info["splits"]:
        labels = prepared.read_split(PREPARED, "train").column("label").to_numpy()
        validation_split(labels, p.tune.val_fraction, p.tune.seed)
    sizes = ", ".join(f"{n} {s}" for s, n in info["splits"].items())
    what = ("damaged shard(s) skipped past (their intact samples kept: see skipped in data/prepared/info.json)"
            if indexed.kind(p.data.name) else "unreadable skipped")
    print(f"prepared {info['dataset']}: {len(info['classes'])} classes, {sizes} images"
          + (f", {len(info['skipped'])} {what}" if info["skipped"] else ""))
    absent = prepared.classes_without_images(PREPARED, "test", info["classes"])
    if absent:
        print(f"note: no test images of {', '.join(absent[:10])}{' ...' if len(absent) > 10 else ''}: "
              f"mean_per_class_recall averages the {len(info['classes']) - len(absent)} classes with test images, "
              "and metrics/accuracy.json lists the others as classes_absent_from_test")


if __name__ == "__main__":
    run(main)
