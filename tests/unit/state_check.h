/* state_check.h — what every core's state loader must survive (tests/unit/state_check.c):
 * every truncation, every byte changed, a version or a section it does not know, bytes left
 * over. Used by the unit tests of each core that saves its state.
 */
#ifndef LIMPET_TESTS_STATE_CHECK_H
#define LIMPET_TESTS_STATE_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "limpet/state.h"

/* Loads whatever the reader holds next with the core under test and frees it again; returns
 * the loader's verdict (LP_OK: it took the state). */
typedef lp_err (*state_load_fn)(struct lp_state_rd *rd, void *ctx);

/* `file` is a whole state file (lp_state_begin .. lp_state_finish) with one section of the
 * core under test. Checks that the loader takes it; refuses every truncation of the section
 * (its length patched to match, so the cut falls inside a field, not just short of the
 * header) with a reason; refuses the section with a byte added, another version, another tag;
 * and, for up to `flips` byte positions, either takes a changed byte or refuses it with a
 * reason, never anything else (ASan and UBSan catch the rest). */
void state_check_loader(const uint8_t *file, size_t len, state_load_fn load, void *ctx,
                        size_t flips);

#endif
