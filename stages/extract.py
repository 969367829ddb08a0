"""extract: frozen image-encoder features of every prepared split -> features/<split>/."""

import torch

from clipprobe import devices, params
from clipprobe.data import prepared
from clipprobe.encode import encoders, extract, ray_engine, towers
from clipprobe.stage import FEATURES, PREPARED, run


def main():
    p = params.load()
    splits = list(prepared.read_info(PREPARED)["splits"])
    on_ray = p.extract.engine == "ray"
    if on_ray:
        ray_engine.require_ray()
    device = torch.device(params.ray_device(p.extract)) if on_ray else devices.pick_device(p.extract.device)
    dtype = devices.pick_precision(p.extract.precision, device)
    batch_size, workers = extract.loader_settings(p.extract.batch_size, p.extract.workers, device)
    encoder = encoders.load_encoder(p.model.name, p.model.weights, p.extract.layer)
    if not on_ray:  # Ray actors load their own copies
        towers.place(encoder, device, dtype)

    spec = extract.spec(encoder, p.model.name, p.model.weights, batch_size=batch_size,
                        shard_size=p.extract.shard_size, device=device, dtype=dtype)
    fps = {s: extract.split_fingerprint(spec, PREPARED, s) for s in splits}
    extract.forget_other_runs(set(fps.values()))
    if on_ray:
        with ray_engine.connected(p.extract.ray.address):
            for s in splits:
                ray_engine.extract_split(encoder, PREPARED, s, extract.SCRATCH / fps[s], spec, fps[s],
                                         model=p.model, extract=p.extract, device=device, dtype=dtype)
    else:
        for s in splits:
            extract.extract_split(encoder, PREPARED, s, extract.SCRATCH / fps[s], spec, fps[s],
                                  device=device, dtype=dtype, workers=workers)
    for s in splits:  # only when every split is done, so a killed run never loses finished work
        extract.publish(extract.SCRATCH / fps[s], FEATURES / s)


if __name__ == "__main__":
    run(main)
