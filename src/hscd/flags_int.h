/**
 * What the pieces of hscd's flags share (flags.c: the table; flags_apply.c: setting a flag and
 * the handlers; flags_load.c: the environment, argv and the checks across flags). Private to
 * them: the rest of hscd includes flags.h.
 */
#ifndef HSCD_FLAGS_INT_H
#define HSCD_FLAGS_INT_H

#include "flags.h"

/** Entry `f`'s index in the table: its slot in hscd_flags_t's copies[]. */
size_t hscd_flags_index(const hscd_flag_t *f);

/** Prints that `value` of `flag` is invalid and `fix` (not the value when from `$VAR`). */
int hscd_flags_bad_value(const char *flag, const char *value, const char *fix);

/** Checks `value` against entry `f` and stores it; `flag` names it in messages. */
int hscd_flags_apply_entry(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                           const char *value);

/* The handlers of the entries that are not one field (flags_apply.c). */
int hscd_flag_set_server_ip(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                            const char *value, uint64_t n);
int hscd_flag_set_server_port(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                              const char *value, uint64_t n);
int hscd_flag_add_cors_origin(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                              const char *value, uint64_t n);
int hscd_flag_read_jwt_key(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                           const char *value, uint64_t n);
int hscd_flag_set_log_level(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                            const char *value, uint64_t n);
int hscd_flag_set_data_dir(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                           const char *value, uint64_t n);
int hscd_flag_set_fsync(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                        uint64_t n);
int hscd_flag_set_redis(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                        uint64_t n);
int hscd_flag_show_help(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                        uint64_t n);
int hscd_flag_show_version(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                           const char *value, uint64_t n);
int hscd_flag_show_markdown(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                            const char *value, uint64_t n);
int hscd_flag_set_log_format(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                             const char *value, uint64_t n);
int hscd_flag_set_config(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                         const char *value, uint64_t n);
int hscd_flag_set_check(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                        uint64_t n);
int hscd_flag_no_http2(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                       uint64_t n);

#endif
