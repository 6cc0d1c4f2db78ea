/* tileattn decode: decoding attention over a KV cache in .npy files. */
#ifndef TILEATTN_CLI_CMD_DECODE_H
#define TILEATTN_CLI_CMD_DECODE_H

/* argv[0] is "decode"; see `tileattn decode --help`. Returns 0, or 2 on bad
 * usage, bad input or a failed write (a one-line message on stderr). */
int ta_cmd_decode(int argc, char **argv);

#endif /* TILEATTN_CLI_CMD_DECODE_H */
