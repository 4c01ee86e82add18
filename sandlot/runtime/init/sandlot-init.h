/*
 * The two programs of the sandlot-init binary, which share nothing but the binary: it is
 * built static for every host already, and runc can run it as the network hook from the
 * same bind mount it runs it as PID 1 from. main.c picks one by the first argument.
 */
#ifndef SANDLOT_INIT_H
#define SANDLOT_INIT_H

/* PID 1 of a sandbox (init.c): sandlot-init --listen ADDR:PORT --token-fd N [--ready-fd M] */
int init_main(int argc, char **argv);

/* The runc createRuntime hook (nethook.c): sandlot-init net-hook --veth NAME ...; argv[0] is
 * "net-hook". */
int net_hook_main(int argc, char **argv);

#endif
