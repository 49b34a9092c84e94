/* mcp_upgrade.c — the MCP pool's part of an upgrade in place: what it hands over (the pool,
 * its entries with their routes and children, the attachments with the lines not yet taken)
 * and how the new binary takes it back. upgrade_state.c writes and reads the bytes; this file
 * only walks and rebuilds mcp_server.c's lists. */
#include <stdio.h>
#include <stdlib.h>

#include "limpet/child.h"
#include "limpet/mcpio.h"
#include "limpet/stream.h"

#include "mcp_server_internal.h"

const lp_mcppool *lp_mcpd_pool(const struct lp_mcpd *m)
{
    return m->pool;
}

uint64_t lp_mcpd_next_att(const struct lp_mcpd *m)
{
    return m->next_att;
}

void lp_mcpd_each(struct lp_mcpd *m, void (*entry)(void *, const struct lp_mcpd_entry_image *),
                  void (*att)(void *, const struct lp_mcpd_att_image *), void *user)
{
    for (struct entry *e = m->entries; e; e = e->next) {
        struct lp_mcpd_entry_image img = {
            .id = e->id, .name = e->name, .scope = e->scope, .route = e->route, .child = e->child};
        entry(user, &img);
    }
    for (struct att *a = m->atts; a; a = a->next) {
        struct lp_mcpd_att_image img = {
            .id = a->id,
            .entry = a->entry,
            .session = a->st ? lp_stream_session(a->st) : NULL,
            .stream = a->st ? lp_stream_id(a->st) : 0,
            .forgotten = a->forgotten,
            .doomed_code = a->doom_code,
            .doomed = a->doomed,
            /* A host's partial line is no longer held here: it waits in the stream's receive
             * queue, which the mux's state carries. */
            .in_part = NULL,
            .in_len = 0,
            .in_skipping = false,
            .out = &a->out,
        };
        att(user, &img);
    }
}

void lp_mcpd_restore_pool(struct lp_mcpd *m, lp_mcppool *pool, uint64_t next_att)
{
    lp_mcppool_free(m->pool);
    m->pool = pool;
    m->next_att = next_att;
}

/* Entries and attachments keep the order they had: appended at the tail. */
lp_err lp_mcpd_restore_entry(struct lp_mcpd *m, const struct lp_mcpd_entry_image *img)
{
    struct entry *e = calloc(1, sizeof(*e)), **tail = &m->entries;
    lp_err rc;

    if (e == NULL) {
        lp_mcproute_free(img->route);
        return LP_ERR_NOMEM;
    }
    e->m = m;
    e->id = img->id;
    e->route = img->route;
    snprintf(e->name, sizeof(e->name), "%s", img->name);
    snprintf(e->scope, sizeof(e->scope), "%s", img->scope);
    snprintf(e->tag, sizeof(e->tag), "mcp=%s scope=%s", e->name, e->scope);
    if (img->child_img != NULL &&
        (rc = lp_child_adopt(m->rt->loop, img->child_img, m->cfg->mcp.max_message, e->tag,
                             &mcpd_child_hooks, e, &e->child)) != LP_OK) {
        lp_mcproute_free(e->route);
        free(e);
        return rc;
    }
    while (*tail)
        tail = &(*tail)->next;
    *tail = e;
    return LP_OK;
}

lp_err lp_mcpd_restore_att(struct lp_mcpd *m, const struct lp_mcpd_att_image *img)
{
    struct att *a = calloc(1, sizeof(*a)), **tail = &m->atts;

    if (a == NULL)
        return LP_ERR_NOMEM;
    a->m = m;
    a->id = img->id;
    a->entry = img->entry;
    a->forgotten = img->forgotten;
    a->doom_code = img->doomed_code;
    snprintf(a->doomed, sizeof(a->doomed), "%s", img->doomed);
    lp_streamq_init(&a->out);
    while (*tail)
        tail = &(*tail)->next;
    *tail = a;
    if (img->in_len > 0) { /* a state from a binary that held partial lines itself */
        mcpd_free_att(a);
        return LP_ERR_INVALID;
    }
    if ((img->out_len > 0 && !lp_streamq_append(&a->out, img->out_bytes, img->out_len)) ||
        lp_stream_adopt(img->session, img->stream, &mcpd_att_hooks, a, &a->st) != LP_OK) {
        mcpd_free_att(a);
        return LP_ERR_NOMEM;
    }
    return LP_OK;
}

void lp_mcpd_restore_done(struct lp_mcpd *m)
{
    for (struct entry *e = m->entries; e; e = e->next)
        mcpd_flush_route(e);
    for (struct att *a = m->atts; a; a = a->next) {
        if (a->doomed[0] != '\0')
            ev_timer_start(m->rt->loop, &m->sweep);
        mcpd_push_att(a);
        mcpd_drain_att(a);
    }
    mcpd_run_actions(m);
}

bool lp_mcpd_runs(const struct lp_mcpd *m, pid_t pid)
{
    for (const struct entry *e = m->entries; e != NULL; e = e->next)
        if (e->child != NULL && lp_child_pid(e->child) == pid)
            return true;
    return false;
}
