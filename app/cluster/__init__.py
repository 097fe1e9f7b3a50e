"""Many devices and machines: the engine as a Ray Serve deployment behind the FastAPI ingress.

replica.py  one engine (a Studio) per Serve replica; its runs stream back over Ray streaming calls
router.py   the request router: live messages go to the replica that holds the run
front.py    the ingress's studio: routes messages by run id, relays streams, writes the gallery
stream.py   the Sink that feeds a run's stream; gallery.py what a replica keeps of the gallery
launch.py   `python -m app serve --ray`: connect to Ray, deploy the engine, serve the ingress
"""
