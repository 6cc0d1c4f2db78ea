/* tileattn grad and tileattn check-grad (cmd_grad.c). */
#ifndef TA_CLI_CMD_GRAD_H
#define TA_CLI_CMD_GRAD_H

/* tileattn grad --q --k --v --do --dq --dk --dv [--o --lse] [mask flags]:
 * the backward on .npy files; exit 0, or 2 on bad usage or input. */
int ta_cmd_grad(int argc, char **argv);

/* tileattn check-grad --q --k --v --do --dq --dk --dv [--atol --rtol]
 * [mask flags]: gradients against the float64 reference; exit 0 PASS,
 * 1 FAIL, 2 bad usage or input. */
int ta_cmd_check_grad(int argc, char **argv);

#endif /* TA_CLI_CMD_GRAD_H */
