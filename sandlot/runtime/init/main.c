/*
 * sandlot-init's entry point: `sandlot-init net-hook ...` is the network hook (nethook.c),
 * anything else PID 1 (init.c).
 */
#include <string.h>

#include "sandlot-init.h"

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "net-hook") == 0)
        return net_hook_main(argc - 1, argv + 1);
    return init_main(argc, argv);
}
