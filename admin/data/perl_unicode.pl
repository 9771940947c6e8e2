use strict; use warnings;
binmode(STDOUT, ":utf8");
my %re = (
  IS_ALNUM => qr/\p{IsAlnum}/, IS_ALPHA => qr/\p{IsAlpha}/, IS_N => qr/\p{IsN}/,
  IS_LOWER => qr/\p{IsLower}/, LL => qr/\p{Ll}/, C => qr/\p{C}/, SPACE => qr/\s/,
);
print "# perl $^V, unicode ", Unicode::UCD::UnicodeVersion(), "\n" if eval { require Unicode::UCD; 1 };
for my $name (sort keys %re) {
  my $r = $re{$name}; my @ranges; my $start = -1; my $prev = -2;
  for my $cp (0 .. 0x10FFFF) {
    my $s = chr($cp); utf8::upgrade($s);  # character semantics, as after binmode :utf8
    my $m = ($cp >= 0xD800 && $cp <= 0xDFFF) ? ($name eq "C") : ($s =~ $r);
    if ($m) { if ($cp != $prev + 1) { push @ranges, [$start, $prev] if $start >= 0; $start = $cp; } $prev = $cp; }
  }
  push @ranges, [$start, $prev] if $start >= 0;
  print "$name ", join(",", map { sprintf("%X-%X", @$_) } @ranges), "\n";
}
