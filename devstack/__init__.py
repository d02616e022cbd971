"""Development stand-ins, never part of a production deployment: the AWS emulator (moto server with
the project's fixes), the whole stack on one machine (`./run demo`), and process helpers (free ports,
start a process and wait until it is healthy) shared by the launcher, the tests and the benchmark."""
