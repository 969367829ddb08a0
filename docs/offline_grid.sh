#!/bin/sh
# The README's offline leaderboard, made the way the README's grid workflow makes any other:
# untrained (random-weight) encoders x the offline datasets (Fashion-MNIST from Debian, a
# generated ImageFolder of shapes), queued with `dvc exp run --queue`, run by `dvc queue start`,
# reported by `clipprobe report` into docs/leaderboard.md and docs/leaderboard.png. Target
# `evaluate`: the linear probe's stages only (without it the zero-shot and few-shot stages run too,
# and the report adds their tables).
# Run from the root of a clone, with the environment active:  sh docs/offline_grid.sh
# JOBS=N experiments at a time (default 1: each extraction already uses every CPU core).
set -eu
shapes="$(python docs/shapes.py "${SHAPES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/clipprobe/shapes}")"
dvc exp run --queue evaluate -S model.weights=random -S 'model.name=ViT-B/32,ViT-S-32,RN50' \
    -S "data.name=fashion-mnist,$shapes" -S data.limit_per_class=50 -S C=auto
dvc queue start -j "${JOBS:-1}"
while dvc queue status | grep -qE 'Queued|Running'; do sleep 10; done
clipprobe report --rev HEAD --md docs/leaderboard.md --csv none --png docs/leaderboard.png
