import test from 'ava';
import { appletSymbols, trimConfig } from '@tinyx/builder/internals';

// `//applet:` lines as BusyBox 1.35's sources have them (coreutils/mkdir.c, shell/ash.c, shell/hush.c,
// init/halt.c, modutils/modprobe-small.c, modutils/insmod.c): one symbol per applet, some nested in a
// second IF_ (the module tools), some applets under two symbols (sh: ash or hush).
const SOURCES = [
  '//applet:IF_MKDIR(APPLET_NOFORK(mkdir, mkdir, BB_DIR_BIN, BB_SUID_DROP, mkdir))\n',
  '//applet:IF_ASH(APPLET(ash, BB_DIR_BIN, BB_SUID_DROP))\n//applet:IF_SH_IS_ASH(  APPLET_ODDNAME(sh,   ash, BB_DIR_BIN, BB_SUID_DROP, ash))\n',
  '//applet:IF_SH_IS_HUSH(  APPLET_ODDNAME(sh,   hush, BB_DIR_BIN, BB_SUID_DROP, hush))\n',
  '//applet:IF_HALT(    APPLET(    halt,               BB_DIR_SBIN, BB_SUID_DROP))\n//applet:IF_REBOOT(  APPLET_ODDNAME(reboot,   halt, BB_DIR_SBIN, BB_SUID_DROP, reboot))\n',
  '//applet:IF_INSMOD(  IF_MODPROBE_SMALL(APPLET_NOEXEC( insmod,   modprobe, BB_DIR_SBIN, BB_SUID_DROP, insmod  )))\n',
  '//applet:IF_INSMOD(IF_NOT_MODPROBE_SMALL(APPLET_NOEXEC(insmod, insmod, BB_DIR_SBIN, BB_SUID_DROP, insmod)))\n',
  '//applet:IF_TEST1(APPLET_NOFORK([,  test, BB_DIR_USR_BIN, BB_SUID_DROP, test))\n',
  '//config:config MKDIR\n//usage:#define mkdir_trivial_usage\n',
];

test("each applet's config symbol, read from the `//applet:` lines (nested IF_, odd names, [)", (t) => {
  const symbols = appletSymbols(SOURCES);
  t.deepEqual([...symbols.keys()].sort(), ['ASH', 'HALT', 'INSMOD', 'MKDIR', 'REBOOT', 'SH_IS_ASH', 'SH_IS_HUSH', 'TEST1']);
  t.deepEqual([...symbols.get('SH_IS_ASH')!], ['sh']);
  t.deepEqual([...symbols.get('INSMOD')!], ['insmod']);
  t.deepEqual([...symbols.get('TEST1')!], ['[']);
});

test("Debian's configuration keeps the wanted applets' symbols and every feature; the other applets and EXTRA_COMPAT are turned off", (t) => {
  const debian = ['CONFIG_MKDIR=y', 'CONFIG_FEATURE_MKDIR_LONG_OPTIONS=y', 'CONFIG_ASH=y', 'CONFIG_SH_IS_ASH=y', '# CONFIG_SH_IS_HUSH is not set', 'CONFIG_HALT=y', 'CONFIG_REBOOT=y', 'CONFIG_INSMOD=y', 'CONFIG_EXTRA_COMPAT=y', 'CONFIG_STATIC=y', 'CONFIG_EXTRA_VERSION="Debian"', ''].join('\n');
  const trimmed = trimConfig(debian, appletSymbols(SOURCES), ['sh', 'mkdir', 'reboot']).split('\n');
  t.deepEqual(trimmed, [
    'CONFIG_MKDIR=y',
    'CONFIG_FEATURE_MKDIR_LONG_OPTIONS=y',
    // ash is the applet "ash", which is not wanted; sh stays ash through SH_IS_ASH.
    '# CONFIG_ASH is not set',
    'CONFIG_SH_IS_ASH=y',
    '# CONFIG_SH_IS_HUSH is not set',
    '# CONFIG_HALT is not set',
    'CONFIG_REBOOT=y',
    '# CONFIG_INSMOD is not set',
    '# CONFIG_EXTRA_COMPAT is not set',
    'CONFIG_STATIC=y',
    'CONFIG_EXTRA_VERSION="Debian"',
    '',
  ]);
});
