"""A fleet of inference actors on Ray: `process --cluster` (recorded archives) and `serve --cluster` (cameras).

    ray_cluster      connect to a cluster (or start one in-process), plan and start the actors
    inference_actor  the actor: loads the model once, runs `process` units and `serve` camera groups
    archive          the archive driver: files as units, retried on another actor when one is lost
    placement        cameras onto actors by capacity (a pure function)
    camera_fleet     the camera controller: places, watches, re-places, gathers metrics, drains

Ray is the `cluster` extra; nothing here imports it until a `--cluster` command runs.
"""
