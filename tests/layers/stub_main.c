/* stub_main.c — the entry point of the layer checks (Makefile: layers). Linking every object
 * of one layer with only the layers below it proves the layer never calls up; this program is
 * never run. */
int main(void);

int main(void)
{
    return 0;
}
